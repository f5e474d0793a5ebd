"""wsgi.input: request bodies fed by the reactor thread and read by an app thread.

Thread bridge layer: uses threading only. Never touches a socket or a transport; the
container passes callbacks (send "100 Continue", resume the transport) that do that.
"""

from __future__ import annotations

import io
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
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


class BufferedBody(_Readable):
    """wsgi.input for a body received completely before the app runs.

    Small bodies stay in memory (chunks joined once, read through BytesIO without copying
    the whole); past ``spool_threshold_bytes`` they move to an anonymous temporary file, so a
    large upload costs disk, not memory (waitress spools the same way).
    """

    def __init__(self, spool_threshold_bytes: int) -> None:
        """Called in the reactor thread."""
        self._threshold = spool_threshold_bytes
        self._chunks: list[bytes] = []
        self._file: IO[bytes] | None = None
        self._reader: IO[bytes] | None = None
        self.length = 0
        self.spooled = False

    def feed(self, data: bytes) -> None:
        """Called in the reactor thread: append body bytes."""
        if not data:
            return
        self.length += len(data)
        if self._file is not None:
            self._file.write(data)
            return
        self._chunks.append(data)
        if self.length > self._threshold:
            # Lives until close(), not a block; anonymous, so nothing is left on disk.
            spool: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
            spool.writelines(self._chunks)
            self._chunks = []
            self._file = spool
            self.spooled = True

    def finish(self) -> None:
        """Called in the reactor thread once the body is complete: rewind for reading."""
        if self._file is not None:
            self._file.seek(0)
            self._reader = self._file
        else:
            # BytesIO over an immutable bytes shares its buffer: no second copy.
            self._reader = io.BytesIO(b"".join(self._chunks))
            self._chunks = []

    def close(self) -> None:
        """Called in any thread, after the app is done: frees the temporary file."""
        self._chunks = []
        for stream in (self._reader, self._file):
            if stream is not None:
                stream.close()

    def _stream(self) -> IO[bytes]:
        reader = self._reader
        if reader is None:
            raise RuntimeError("BufferedBody read before finish()")
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


class StreamingBody(_Readable):
    """wsgi.input for a body that arrives while the app reads it (Expect: 100-continue).

    The reactor feeds; an app thread reads, blocking on a Condition until enough bytes, the
    end, or a failure. Past ``high_water_bytes`` buffered, feed() asks the caller to pause
    the transport; ``on_drained`` resumes it once the reader drains below half of that, or
    when the reader must wait for more than is buffered (a line longer than high water).
    """

    def __init__(
        self,
        *,
        on_first_read: Callable[[], None],
        on_drained: Callable[[], None],
        high_water_bytes: int = 256 * 1024,
    ) -> None:
        """Called in the reactor thread."""
        self._on_first_read: Callable[[], None] | None = on_first_read
        self._on_drained = on_drained
        self._high_water = high_water_bytes
        self._low_water = high_water_bytes // 2
        self._cond = threading.Condition(threading.Lock())
        self._chunks: deque[bytes] = deque()
        self._offset = 0  # bytes of _chunks[0] already read
        self._buffered = 0  # unread bytes in _chunks
        self._scanned = 0  # leading unread bytes known to hold no b"\n"
        self._finished = False
        self._error: BaseException | None = None
        self._over_high_water = False
        self._waiters = 0  # app threads blocked in _wait
        self.length = 0

    def feed(self, data: bytes) -> bool:
        """Called in the reactor thread. True when the buffer is over high water: pause."""
        with self._cond:
            if self._error is not None or self._finished or not data:
                return False
            self._chunks.append(data)
            self._buffered += len(data)
            self.length += len(data)
            self._cond.notify_all()
            # A blocked reader still needs more than is buffered: pausing now would only
            # make it resume again at once.
            if self._buffered > self._high_water and not self._waiters:
                self._over_high_water = True
                return True
            return False

    def finish(self) -> None:
        """Called in the reactor thread: the body is complete."""
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    def fail(self, exc: BaseException) -> None:
        """Called in the reactor thread: pending and later reads raise ``exc``."""
        with self._cond:
            if self._error is None:
                self._error = exc
                self._drop()
            self._cond.notify_all()

    def close(self) -> None:
        """Called in any thread: frees the buffer; later reads raise ValueError."""
        self.fail(ValueError("I/O operation on closed request body"))

    def _drop(self) -> None:
        self._chunks.clear()
        self._offset = self._buffered = self._scanned = 0

    def _wait(self, ready: Callable[[], bool]) -> None:
        """Block (lock held) until ``ready()``, the end, or a failure (which raises)."""
        while True:
            error = self._error
            if error is not None:
                # The same instance may be raised many times; don't let tracebacks pile up.
                raise error.with_traceback(None)
            if self._finished or ready():
                return
            callback = self._on_first_read
            if callback is not None:
                # Called once, just before the first read would block: this is when the
                # container sends "100 Continue" (RFC 9110 §10.1.1), never earlier.
                self._on_first_read = None
                self._call_unlocked(callback)
                continue
            if self._over_high_water:
                # The reader needs more than is buffered (a line or a read(n) longer than
                # high water) while the transport is paused: resume, or both sides wait forever.
                self._over_high_water = False
                self._call_unlocked(self._on_drained)
                continue
            self._waiters += 1
            try:
                self._cond.wait()
            finally:
                self._waiters -= 1

    def _call_unlocked(self, callback: Callable[[], None]) -> None:
        """Run a container callback without the lock: it may hop to the reactor."""
        self._cond.release()
        try:
            callback()
        finally:
            self._cond.acquire()

    def _take(self, size: int) -> bytes:
        """Remove and return the next ``size`` unread bytes (lock held, size <= buffered)."""
        if not size:
            return b""
        chunks = self._chunks
        pieces: list[bytes] = []
        need = size
        while need:
            chunk = chunks[0]
            start = self._offset
            available = len(chunk) - start
            if available <= need:
                pieces.append(chunk[start:] if start else chunk)
                chunks.popleft()
                self._offset = 0
                need -= available
            else:
                pieces.append(chunk[start : start + need])
                self._offset = start + need
                need = 0
        self._buffered -= size
        self._scanned = max(0, self._scanned - size)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _line_end(self) -> int:
        """Length of the first line (through b"\\n") in the buffer, or 0 when none yet."""
        base = 0
        skip = self._scanned
        for index, chunk in enumerate(self._chunks):
            start = self._offset if index == 0 else 0
            available = len(chunk) - start
            if base + available > skip:
                found = chunk.find(b"\n", start + max(0, skip - base))
                if found >= 0:
                    return base + found - start + 1
            base += available
        self._scanned = base
        return 0

    def _read_locked(self, size: int) -> bytes:
        if size < 0:
            self._wait(lambda: False)
            return self._take(self._buffered)
        self._wait(lambda: self._buffered >= size)
        return self._take(min(size, self._buffered))

    def _readline_locked(self, size: int) -> bytes:
        limit = size if size >= 0 else -1
        self._wait(lambda: self._line_end() > 0 or 0 <= limit <= self._buffered)
        end = self._line_end() or self._buffered
        if limit >= 0:
            end = min(end, limit)
        return self._take(end)

    def _locked_call(self, method: Callable[[int], bytes], size: int | None) -> bytes:
        with self._cond:
            data = method(-1 if size is None else size)
            drained = self._over_high_water and self._buffered < self._low_water
            if drained:
                self._over_high_water = False
        if drained:
            # Outside the lock: the container's callback hops to the reactor to resume.
            self._on_drained()
        return data

    def read(self, size: int | None = -1) -> bytes:
        """Called in an app thread: ``size`` bytes (fewer only at the end), all when negative."""
        return self._locked_call(self._read_locked, size)

    def readline(self, size: int | None = -1) -> bytes:
        """Called in an app thread: one line, at most ``size`` bytes when non-negative."""
        return self._locked_call(self._readline_locked, size)
