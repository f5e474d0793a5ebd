"""What the reload parent says while the app cannot load: the child's error, as a 500 page.

Composition layer, used only by reload.py in the parent. It passes the child's stderr
through to the terminal while keeping its tail, finds the last traceback in it, and
answers every connection on the held sockets with a plain-text 500 naming the file, line
and message, until the next child starts. It never imports the app and never runs a reactor.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import selectors
import socket
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger("treadle")

TAIL_BYTES = 64 * 1024  # a long Django traceback is ~10 KiB; older output is not the error
READ_TIMEOUT_S = 2.0  # for the request head: a client that sends nothing is dropped
MAX_HEAD_BYTES = 64 * 1024
MAX_CONNECTIONS = 32  # answered at once; a development server, not a load target
_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)')
_TRACEBACK = "Traceback (most recent call last):"
_LISTENING = "Listening at: "  # server.py's line once every listener is up
_CHAINED = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)


class OutputTail:
    """Copies a child's stderr to ours as it comes and keeps the last TAIL_BYTES of it."""

    def __init__(self, source: IO[bytes], sink: IO[bytes] | None = None) -> None:
        self._source = source
        self._sink = sink if sink is not None else getattr(sys.stderr, "buffer", None)
        self._tail = bytearray()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._pump, name="reload-stderr", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        """Runs in the pump thread until the child (and anything it started) closes stderr."""
        fd = self._source.fileno()
        with self._source:
            # Whatever arrives is passed on at once, partial lines too (a prompt, a progress bar).
            while chunk := os.read(fd, 65536):
                self._forward(chunk)
                with self._lock:
                    self._tail += chunk
                    del self._tail[:-TAIL_BYTES]

    def _forward(self, chunk: bytes) -> None:
        try:
            if self._sink is not None:
                self._sink.write(chunk)
                self._sink.flush()
            else:  # our stderr has no byte layer (replaced by a test runner, say)
                sys.stderr.write(chunk.decode("utf-8", "replace"))
        except (OSError, ValueError) as error:  # our own stderr is gone: keep the tail anyway
            log.debug("reload: cannot copy the worker's output: %s", error)

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def text(self) -> str:
        with self._lock:
            return self._tail.decode("utf-8", "replace")


@dataclass(frozen=True)
class Failure:
    """Why the worker is gone: one line for the log, the whole traceback for the page."""

    summary: str  # "mod.py, line 1: SyntaxError: invalid syntax"
    details: str  # the last traceback the worker printed, as it printed it
    served: bool = False  # it had started listening: the app loaded, then the worker ended

    def page(self) -> bytes:
        what = "The worker stopped" if self.served else "The app could not be loaded"
        text = (
            f"{what}: {self.summary}\n\n"
            "treadle is running with --reload: every request gets this page until a file\n"
            "changes and the app loads again.\n\n"
            f"{self.details}"
        )
        return text.rstrip("\n").encode("utf-8") + b"\n"


def describe(output: str, status: int, roots: Sequence[Path] = ()) -> Failure:
    """The worker's output and exit status -> the file, line and message a developer fixes.

    The last traceback in the output is the error (a chained one prints the cause first).
    Its frame is the last one in the project (under ``roots``, outside site-packages), else
    the last one; its message is the first unindented line after the frames. Only what
    follows the worker's "Listening at" line counts once it has one: a traceback logged
    for a request long before is not why it ended.
    """
    lines = output.splitlines()
    started = max((i for i, line in enumerate(lines) if _LISTENING in line), default=-1)
    lines = lines[started + 1 :]
    served = started >= 0
    exited = f"the worker exited with status {status}"
    if status < 0:
        exited = f"the worker was killed by signal {-status}"
    frames = [i for i, line in enumerate(lines) if _FRAME.match(line)]
    if not frames:
        last = next((line for line in reversed(lines) if line.strip()), "")
        return Failure(f"{last} ({exited})" if last else exited, "\n".join(lines)[-4096:], served)
    # The traceback's frames are indented; it starts at its header, which a SyntaxError
    # raised by an import (no frames of its own left) does not print.
    start = _block_start(lines, frames[-1])
    # A chained error prints its causes first: keep them on the page.
    while start >= 2 and lines[start - 1] == "" and lines[start - 2] in _CHAINED:
        earlier = [i for i in frames if i < start - 2]
        if not earlier:
            break
        start = _block_start(lines, earlier[-1])
    message = next((line for line in lines[frames[-1] + 1 :] if line and not line[0].isspace()), "")
    summary = message or exited
    chosen = _project_frame([_FRAME.match(lines[i]) for i in frames if i >= start], roots)
    if chosen is not None:
        summary = f"{_shown(chosen['file'])}, line {chosen['line']}: {summary}"
    return Failure(summary, "\n".join(lines[start:]) + "\n", served)


def _block_start(lines: list[str], frame: int) -> int:
    """The first line of the traceback that holds line ``frame``."""
    start = frame
    while start > 0 and (lines[start - 1][:1].isspace() or lines[start - 1] == _TRACEBACK):
        start -= 1
        if lines[start] == _TRACEBACK:
            break
    return start


def _project_frame(
    frames: list[re.Match[str] | None], roots: Sequence[Path]
) -> re.Match[str] | None:
    def in_project(name: str) -> bool:
        path = Path(name)
        if "site-packages" in path.parts or name.startswith("<"):
            return False
        return any(path.is_relative_to(root) for root in roots)

    found = [match for match in frames if match is not None]
    return next((m for m in reversed(found) if in_project(m["file"])), found[-1] if found else None)


def _shown(name: str) -> str:
    path, cwd = Path(name), Path.cwd()
    return str(path.relative_to(cwd)) if path.is_relative_to(cwd) else name


class FailurePage:
    """Answers each connection on the held sockets with a 500, until close() (its own threads)."""

    def __init__(self, socks: Sequence[socket.socket], body: bytes) -> None:
        self._socks = list(socks)
        self._body = body
        self._wake_r, self._wake_w = os.pipe()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._thread = threading.Thread(target=self._accept, name="reload-page", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop accepting: the next child takes the sockets. Called before it starts."""
        os.write(self._wake_w, b"x")
        self._thread.join()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _accept(self) -> None:
        """Runs in the page's thread: accept until woken by close()."""
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_r, selectors.EVENT_READ)
            for sock in self._socks:
                selector.register(sock, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj == self._wake_r:
                        return
                    self._take(key.fileobj)  # type: ignore[arg-type]

    def _take(self, sock: socket.socket) -> None:
        try:
            conn, _ = sock.accept()
        except OSError:  # gone before we took it, or the socket is non-blocking and empty
            return
        if not self._slots.acquire(blocking=False):
            conn.close()
            return
        threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        """Runs in a thread per connection: read the head, send the page, close."""
        try:
            with conn:
                conn.settimeout(READ_TIMEOUT_S)
                head = _read_head(conn)
                if head is None:
                    return
                body = b"" if head.startswith(b"HEAD ") else self._body
                conn.sendall(
                    b"HTTP/1.1 500 Internal Server Error\r\n"
                    b"Content-Type: text/plain; charset=utf-8\r\n"
                    b"Content-Length: %d\r\n"
                    b"Cache-Control: no-store\r\n"
                    b"Connection: close\r\n\r\n" % len(self._body) + body
                )
                conn.shutdown(socket.SHUT_WR)
                # Read what the client still sends (a body) so closing does not reset the
                # connection before it has read the page (RFC 9112 §9.6).
                with contextlib.suppress(OSError):
                    while conn.recv(65536):
                        pass
        except OSError as error:
            log.debug("reload: answering a request while the app is broken: %s", error)
        finally:
            self._slots.release()


def _read_head(conn: socket.socket) -> bytes | None:
    """The request head (up to MAX_HEAD_BYTES), or None when the client sent nothing."""
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data and len(data) < MAX_HEAD_BYTES:
        try:
            chunk = conn.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return data or None
