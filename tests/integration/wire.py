"""Small raw-socket helpers for integration tests (no HTTP library in the way)."""

from __future__ import annotations

import http.client
import socket
import time
import weakref


def connect(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> socket.socket:
    return socket.create_connection((host, port), timeout=timeout)


def exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send data, then read until the server closes (or timeout)."""
    with connect(port, timeout=timeout) as sock:
        sock.sendall(data)
        return read_until_close(sock, timeout)


def read_until_close(sock: socket.socket, timeout: float = 10.0) -> bytes:
    deadline = time.monotonic() + timeout
    chunks = []
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


class _KeepOpen:
    """The socket's buffered file, minus close(): HTTPResponse closes its file after each
    complete body, which would drop responses already read ahead into the buffer."""

    def __init__(self, file: object) -> None:
        self._file = file

    def __getattr__(self, name: str) -> object:
        return getattr(self._file, name)

    def close(self) -> None:
        """The socket's owner closes the socket; the shared buffer stays usable."""


class _Reader:
    """One buffered reader per socket, so pipelined responses read ahead are not lost."""

    def __init__(self, sock: socket.socket) -> None:
        self.file = _KeepOpen(sock.makefile("rb"))

    def makefile(self, *args: object, **kwargs: object):  # noqa: ANN201
        return self.file


# Keyed by the socket itself (weakly): an id() can be reused by a later socket once the
# first is collected, and a stale reader would then read from the wrong connection.
_readers: weakref.WeakKeyDictionary[socket.socket, _Reader] = weakref.WeakKeyDictionary()


def read_response(sock: socket.socket, method: str = "GET") -> http.client.HTTPResponse:
    """Read exactly one response from a kept-alive socket."""
    reader = _readers.get(sock)
    if reader is None:
        reader = _readers[sock] = _Reader(sock)
    response = http.client.HTTPResponse(reader, method=method)  # type: ignore[arg-type]
    response.begin()
    response.body = response.read()  # type: ignore[attr-defined]
    return response


def wait_for_text(path, timeout: float = 10.0) -> str:  # noqa: ANN001
    """The stripped contents of a file the server writes, once it has any (with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text().strip() if path.exists() else ""
        if text or time.monotonic() > deadline:
            return text
        time.sleep(0.05)  # polling a file another process writes


def status_of(raw: bytes) -> int:
    assert raw.startswith(b"HTTP/1."), raw[:200]
    return int(raw[9:12])
