"""wsgi.input: request bodies fed by the reactor thread and read by an app thread.

Thread bridge layer: no sockets, no transports. The reactor reads a whole body (and
answers "100 Continue" itself) before the app runs, so a read never waits for the client.
The one exception is GrowingUpload: a Mongrel2 async upload of known length, read from
the file Mongrel2 writes while it writes it (the client is then Mongrel2's to wait for).
"""

from __future__ import annotations

import io
import os
import queue
import tempfile
import threading
import time
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


# GrowingUpload: a caught-up read looks at the file again this often.
POLL_S = 0.02
_LINE_BLOCK = 8192


class UploadFailed(OSError):
    """The upload will not be completed (the client went away, the server stops, or it
    stopped growing): raised to the app reading it."""


class GrowingUpload(_Readable):
    """wsgi.input for a Mongrel2 async upload the app reads while Mongrel2 still writes it.

    The reactor says when Mongrel2 is done (``complete``) or the upload is lost (``fail``).
    Mongrel2 sends no progress notices between upload-start and upload-done, so a read that
    has caught up with the writer looks at the file again every POLL_S (a timed wait, not
    a spin) until the bytes it wants are there, the upload is complete, or nothing has
    grown for ``stall_timeout_s``. A read blocks as a regular file's does: ``read(n)``
    returns n bytes unless the body ends first, never more than the declared length.
    """

    def __init__(self, file: IO[bytes], length: int, stall_timeout_s: float) -> None:
        """Called in the reactor thread, with the file opened for reading."""
        self._file = file
        self.length = length
        self._left = length  # bytes of the file not yet taken
        self._buffer = b""  # taken, not yet returned (readline)
        self._stall_timeout_s = stall_timeout_s
        self._changed = threading.Condition()
        self._done = False
        self._failure: str | None = None
        self._closed = False

    # -- the reactor's side ------------------------------------------------------

    def complete(self) -> None:
        """Called in the reactor thread: Mongrel2 has written the whole body."""
        with self._changed:
            self._done = True
            self._changed.notify_all()

    def fail(self, reason: str) -> None:
        """Called in the reactor thread: the rest will never come; reads raise UploadFailed."""
        with self._changed:
            self._failure = reason
            self._changed.notify_all()

    # -- the app's side ------------------------------------------------------------

    def _take(self, want: int, at_least: int | None = None) -> bytes:
        """Called in an app thread: up to ``want`` bytes of the file, waiting for
        ``at_least`` (all of them by default); fewer only at its end."""
        chunks: list[bytes] = []
        got = 0
        idle_since: float | None = None
        enough = want if at_least is None else at_least
        while got < enough:
            if self._failure is not None:
                raise UploadFailed(f"upload failed: {self._failure}")
            data = self._file.read(want - got)
            if data:
                chunks.append(data)
                got += len(data)
                idle_since = None
                continue
            with self._changed:
                if self._failure is not None:
                    continue  # raised at the top
                if self._done:
                    data = self._file.read(want - got)  # written before the notice
                    if not data:
                        break  # shorter than declared: the end is the end
                    chunks.append(data)
                    got += len(data)
                    continue
                now = time.monotonic()
                if idle_since is None:
                    idle_since = now
                elif now - idle_since >= self._stall_timeout_s:
                    raise UploadFailed(
                        f"upload failed: no new bytes for {self._stall_timeout_s:g} s"
                    )
                self._changed.wait(POLL_S)
        self._left -= got
        return b"".join(chunks)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("I/O operation on a closed request body")

    def read(self, size: int | None = -1) -> bytes:
        """Called in an app thread: ``size`` bytes (all when negative), fewer only at the end."""
        self._check_open()
        buffered = self._buffer
        if size is None or size < 0:
            want = len(buffered) + self._left
        else:
            want = min(size, len(buffered) + self._left)
        if want <= len(buffered):
            data, self._buffer = buffered[:want], buffered[want:]
            return data
        self._buffer = b""
        return buffered + self._take(want - len(buffered))

    def readline(self, size: int | None = -1) -> bytes:
        """Called in an app thread: one line, at most ``size`` bytes when non-negative."""
        self._check_open()
        limit = -1 if size is None else size
        if limit == 0:
            return b""
        while True:
            end = self._buffer.find(b"\n") + 1  # 0: no newline yet
            if limit > 0 and (end == 0 or end > limit) and len(self._buffer) >= limit:
                end = limit
            if end or self._left == 0:
                end = end or len(self._buffer)
                line, self._buffer = self._buffer[:end], self._buffer[end:]
                return line
            more = self._take(min(_LINE_BLOCK, self._left), at_least=1)  # what is there
            if not more:
                self._left = 0  # shorter than declared: what is left is the last line
            self._buffer += more

    def close(self) -> None:
        """Called in any thread, after the app is done: closes the file."""
        self._closed = True
        self._buffer = b""
        self._file.close()
