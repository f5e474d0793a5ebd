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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.wire import connect

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_targets(pid: int) -> dict[str, str]:
    """What each descriptor of ``pid`` is (a socket, a file's path), for a failure message."""
    targets = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
    return targets


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
    before = fd_targets(pid)
    baseline = len(before)
    abandon_downloads(server.port, request, count)
    settled = wait_until(lambda: open_fds(pid) <= baseline, 15)
    after = fd_targets(pid)
    new = {fd: target for fd, target in after.items() if before.get(fd) != target}
    assert settled, f"{len(after) - baseline} descriptors left open after {count} aborts: {new}"


def test_aborted_static_downloads_leave_no_descriptor_open(serve, tmp_path: Path) -> None:
    (tmp_path / "big.bin").write_bytes(b"s" * (8 * 1024 * 1024))
    server = serve("tests.apps.hello:app", "--static", f"/files={tmp_path}")
    check_no_fd_left(server, b"GET /files/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")


def test_aborted_file_wrapper_downloads_leave_no_descriptor_open(serve) -> None:
    server = serve("tests.apps.files:app")
    check_no_fd_left(server, b"GET /?mib=8 HTTP/1.1\r\nHost: x\r\n\r\n")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def abandon_uploads(port: int, count: int, body_bytes: int = 500 * 1024) -> None:
    """``count`` clients, 16 at a time, each sending most of a body, then giving up."""
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % body_bytes
    part = b"u" * (body_bytes - 1024)

    def one(_: int) -> None:
        with connect(port) as sock:
            sock.sendall(head + part)
            # The client gives up mid-body. Waiting for the server to close in turn keeps
            # 16 uploads in flight, as 16 clients would (not a backlog of hundreds).
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(1) == b""

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(count)))


@pytest.mark.slow
def test_abandoned_uploads_leave_memory_where_it_started(serve) -> None:
    # The default --gc-threshold: whatever a lost connection left in a reference cycle
    # would wait for the cyclic collector and pile up meanwhile.
    server = serve("tests.apps.echo:app")
    pid = server.proc.pid
    # The C allocator keeps the heap's high-water mark (free, but not returned): let it
    # reach its working size first, then more clients must not grow it further.
    abandon_uploads(server.port, 1000)
    baseline = rss_bytes(pid)
    abandon_uploads(server.port, 3000)
    limit = baseline + 20 * 1024 * 1024
    settled = wait_until(lambda: rss_bytes(pid) <= limit, 15)
    grown = (rss_bytes(pid) - baseline) / 2**20
    assert settled, f"RSS grew by {grown:.0f} MiB after 3000 abandoned uploads"
