"""wsgi.input: request bodies fed by the reactor thread and read by an app thread.

Thread bridge layer: no sockets, no transports. The reactor reads a whole body (and
answers "100 Continue" itself) before the app runs, so a read never waits for the client.
"""

from __future__ import annotations

import io
import os
import queue
import tempfile
import threading
from collections.abc import Iterator
from typing import IO


class _Readable:
    """The part of the wsgi.input protocol that each body derives from readline()."""

    __slots__ = ()

    def readline(self, size: int | None = -1) -> bytes:
        raise NotImplementedError

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        """Called in an app thread: lines until the end or until ``hint`` bytes are read."""
        lines: list[bytes] = []
        total = 0
        limit = hint if hint is not None and hint > 0 else -1
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if 0 <= limit <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        """Called in an app thread: yields lines."""
        while True:
            line = self.readline()
            if not line:
                return
            yield line


class EmptyBody(_Readable):
    """A zero-length, stateless wsgi.input; one instance serves every body-less request."""

    __slots__ = ()
    length = 0

    def read(self, size: int | None = -1) -> bytes:
        """Called in an app thread."""
        return b""

    def readline(self, size: int | None = -1) -> bytes:
        """Called in an app thread."""
        return b""

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        """Called in an app thread."""
        return []

    def close(self) -> None:
        """Called in any thread; nothing to free."""


EMPTY_BODY = EmptyBody()


class _SpoolWriter:
    """One thread that writes every spooled body to its file, in the order it was fed.

    The reactor only queues bytes; the write system calls (and the GIL hand-offs around
    them) happen here. The writer also closes each file, after its last write, so a file
    descriptor is never closed (and reused) while bytes for it are still queued.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[BufferedBody, bytes | int]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def put(self, body: BufferedBody, item: bytes | int) -> None:
        """Called in any thread: body bytes, or _WRITTEN / _CLOSE."""
        if self._thread is None:  # started on the first spooled body, after any fork
            self._thread = threading.Thread(target=self._run, name="treadle-spool", daemon=True)
            self._thread.start()
        self._queue.put((body, item))

    def _run(self) -> None:
        """The writer thread."""
        while True:
            body, item = self._queue.get()
            file = body._file
            if file is None:
                continue
            if item is _CLOSE:
                file.close()
            elif item is _WRITTEN:
                body._written.set()
            elif body._error is None and isinstance(item, bytes):
                try:
                    view = memoryview(item)
                    while view:
                        view = view[os.write(file.fileno(), view) :]
                except OSError as error:  # a full disk: the app's read raises it
                    body._error = error


_WRITTEN, _CLOSE = 1, 2
_spool = _SpoolWriter()
_SPOOL_WAIT_S = 60.0  # a disk that takes longer than this for one body is a broken disk


class BufferedBody(_Readable):
    """wsgi.input for a body received completely before the app runs.

    Small bodies stay in memory (chunks joined once, read through BytesIO without copying
    the whole); past ``spool_threshold_bytes`` they move to an anonymous temporary file, so a
    large upload costs disk, not memory (waitress spools the same way). The reactor only
    queues spooled bytes: a writer thread writes them, and the app's first read waits
    until the last is on disk.
    """

    def __init__(self, spool_threshold_bytes: int) -> None:
        """Called in the reactor thread."""
        self._threshold = spool_threshold_bytes
        self._chunks: list[bytes] = []
        self._file: IO[bytes] | None = None
        self._reader: IO[bytes] | None = None
        self._written = threading.Event()  # set by the writer after the last byte
        self._error: OSError | None = None
        self._closed = False
        self.length = 0
        self.spooled = False

    def feed(self, data: bytes) -> None:
        """Called in the reactor thread: append body bytes."""
        if not data:
            return
        self.length += len(data)
        if self._file is not None:
            _spool.put(self, data)
            return
        self._chunks.append(data)
        if self.length > self._threshold:
            # Lives until close(), not a block; anonymous, so nothing is left on disk.
            # Unbuffered: the writer thread writes each read as it came.
            self._file = tempfile.TemporaryFile(buffering=0)  # noqa: SIM115
            self.spooled = True
            for chunk in self._chunks:
                _spool.put(self, chunk)
            self._chunks = []

    def finish(self) -> None:
        """Called in the reactor thread once the body is complete: rewind for reading."""
        if self._file is not None:
            _spool.put(self, _WRITTEN)  # the reader is made by the app's first read
        else:
            # BytesIO over an immutable bytes shares its buffer: no second copy.
            self._reader = io.BytesIO(b"".join(self._chunks))
            self._chunks = []

    def close(self) -> None:
        """Called in any thread, after the app is done: frees the temporary file."""
        self._chunks = []
        if self._file is None:
            if self._reader is not None:
                self._reader.close()
        elif not self._closed:
            self._closed = True
            _spool.put(self, _CLOSE)  # after the writes already queued for it

    def _stream(self) -> IO[bytes]:
        """Called in an app thread."""
        reader = self._reader
        if reader is not None:
            if self._closed:
                raise ValueError("I/O operation on a closed request body")
            return reader
        if self._closed:
            raise ValueError("I/O operation on a closed request body")
        if self._file is None:
            raise RuntimeError("BufferedBody read before finish()")
        if not self._written.wait(_SPOOL_WAIT_S):
            raise TimeoutError("the request body was not written to disk in time")
        if self._error is not None:
            raise self._error
        self._file.seek(0)
        # Buffered for readline(). The writer closes the file under it, after close().
        reader = io.BufferedReader(self._file)  # type: ignore[arg-type, type-var]
        self._reader = reader
        return reader

    def read(self, size: int | None = -1) -> bytes:
        """Called in an app thread: up to ``size`` bytes, all when negative; b"" at the end."""
        return self._stream().read(-1 if size is None else size)

    def readline(self, size: int | None = -1) -> bytes:
        """Called in an app thread: one line, at most ``size`` bytes when non-negative."""
        return self._stream().readline(-1 if size is None else size)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        """Called in an app thread: lines until the end or until ``hint`` bytes are read."""
        if hint is None or hint <= 0:
            return self._stream().readlines()
        # Not the stream's own: a spooled file's BufferedReader stops once lines *exceed*
        # hint, BytesIO once they reach it. One rule for both, whichever holds the body.
        return super().readlines(hint)
