"""Clients that leave mid-request free everything they held: descriptors and memory.

Integration tier: the real server in a subprocess, real sockets; the server's own
/proc entries are read (Linux only) and waited on with a deadline.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.wire import connect

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)  # polling another process's /proc entries
    return True


def reset(sock: socket.socket) -> None:
    """Close with an RST, as a client that crashes or gives up does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def abandon_downloads(port: int, request: bytes, count: int) -> None:
    """Start ``count`` downloads, take the first bytes of each, then leave."""
    for _ in range(count):
        sock = connect(port)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(request)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 OK")
        reset(sock)


def check_no_fd_left(server, request: bytes, count: int = 500) -> None:
    pid = server.proc.pid
    baseline = open_fds(pid)
    abandon_downloads(server.port, request, count)
    settled = wait_until(lambda: open_fds(pid) <= baseline, 15)
    assert settled, f"{open_fds(pid) - baseline} descriptors left open after {count} aborts"


def test_aborted_static_downloads_leave_no_descriptor_open(serve, tmp_path: Path) -> None:
    (tmp_path / "big.bin").write_bytes(b"s" * (8 * 1024 * 1024))
    server = serve("tests.apps.hello:app", "--static", f"/files={tmp_path}")
    check_no_fd_left(server, b"GET /files/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")


def test_aborted_file_wrapper_downloads_leave_no_descriptor_open(serve) -> None:
    server = serve("tests.apps.files:app")
    check_no_fd_left(server, b"GET /?mib=8 HTTP/1.1\r\nHost: x\r\n\r\n")
