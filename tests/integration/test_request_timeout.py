"""--request-timeout bounds the app's work, not the client's download (--send-timeout does).

Integration tier: the real server with a 1 s request timeout; a client that reads a large
response at about 12 MB/s, so the download takes several times the timeout.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.integration.wire import connect

MIB = 1024 * 1024
SIZE_MIB = 48


def slow_download(port: int, target: str) -> tuple[int, float]:
    """GET ``target`` reading 64 KiB every 5 ms; (body bytes received, seconds taken)."""
    started = time.monotonic()
    with connect(port, timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        total = len(body)
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            total += len(chunk)
            time.sleep(0.005)  # pacing a slow client, not synchronisation
    return total, time.monotonic() - started


@pytest.mark.parametrize(
    ("target", "path"),
    [
        ("tests.apps.big:stream", f"/?mib={SIZE_MIB}"),
        ("tests.apps.files:app", f"/?mib={SIZE_MIB}"),
        ("tests.apps.hello:app", "/files/big.bin"),
    ],
    ids=["streamed", "file_wrapper", "static"],
)
def test_a_slow_download_outlives_the_request_timeout(serve, tmp_path: Path, target, path) -> None:
    (tmp_path / "big.bin").write_bytes(b"s" * (SIZE_MIB * MIB))
    server = serve(target, "--request-timeout", "1", "--static", f"/files={tmp_path}")
    received, took = slow_download(server.port, path)
    assert took > 2, "the client was meant to be slower than the request timeout"
    assert received == SIZE_MIB * MIB, f"cut after {received / MIB:.1f} MiB and {took:.1f} s"
    assert "timed out" not in server.output
