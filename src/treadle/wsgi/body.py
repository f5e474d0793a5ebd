"""wsgi.input: request bodies fed by the reactor thread and read by an app thread.

Thread bridge layer: no sockets, no transports. The reactor reads a whole body (and
answers "100 Continue" itself) before the app runs, so a read never waits for the client.
"""

from __future__ import annotations

import io
import tempfile
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
