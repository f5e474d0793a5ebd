"""Streams a byte range of an open file to a consumer from the reactor, chunk by chunk.

Reactor layer: a Twisted push producer for static files and wsgi.file_wrapper; it reads at
most one chunk per write and only while the consumer is not paused, so memory stays
bounded for any file size. It closes the file in every outcome; never blocks on a thread.
"""

from __future__ import annotations

from typing import BinaryIO, Protocol, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IPushProducer
from zope.interface import implementer

from treadle.errors import RequestCancelled


class _Consumer(Protocol):
    """What FileProducer uses of IConsumer (mypy cannot read zope interfaces)."""

    def registerProducer(self, producer: object, streaming: bool) -> None: ...
    def unregisterProducer(self) -> None: ...
    def write(self, data: bytes) -> None: ...


@implementer(IPushProducer)
class FileProducer:
    """Streams ``length`` bytes from ``offset`` of a file to a consumer, chunk by chunk.

    A push producer: it writes until the consumer pauses it and continues on resume, so
    at most ``chunk_bytes`` is read per write. It relies on the consumer pausing it (Twisted
    transports do once their buffer passes 64 KiB); the file is closed in every outcome.
    """

    def __init__(
        self, file: BinaryIO, offset: int, length: int, chunk_bytes: int = 64 * 1024
    ) -> None:
        self._file = file
        self._offset = offset
        self._remaining = length
        self._chunk_bytes = chunk_bytes
        self._consumer: _Consumer | None = None
        self._done: Deferred[None] = Deferred()
        self._paused = False
        self._writing = False
        self._finished = False

    def start(self, consumer: IConsumer) -> Deferred[None]:
        """Register with ``consumer`` and start writing; fires when the range is sent."""
        self._consumer = cast(_Consumer, consumer)
        self._consumer.registerProducer(self, True)
        if self._finished:
            return self._done  # a disconnected transport stops its producer at once
        try:
            self._file.seek(self._offset)
        except OSError as exc:
            self._finish(exc)
            return self._done
        self._write_chunks()
        return self._done

    def _write_chunks(self) -> None:
        if self._writing or self._consumer is None:
            return  # resumed from inside consumer.write(): the running loop carries on
        self._writing = True
        try:
            while not self._paused and not self._finished and self._remaining > 0:
                try:
                    chunk = self._file.read(min(self._chunk_bytes, self._remaining))
                except OSError as exc:
                    self._finish(exc)
                    return
                if not chunk:
                    self._finish(OSError(f"file ended with {self._remaining} bytes unsent"))
                    return
                self._remaining -= len(chunk)
                assert self._consumer is not None
                self._consumer.write(chunk)
            if self._remaining == 0 and not self._finished:
                self._finish(None)
        finally:
            self._writing = False

    def _finish(self, error: BaseException | None) -> None:
        self._finished = True
        self._file.close()
        if self._consumer is not None and not isinstance(error, RequestCancelled):
            self._consumer.unregisterProducer()
        if error is None:
            self._done.callback(None)
        else:
            self._done.errback(error)

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        if not self._finished:
            self._write_chunks()

    def stopProducing(self) -> None:
        # The consumer is going away (connection lost): it drops us itself.
        if not self._finished:
            self._finish(RequestCancelled("the consumer stopped the file transfer"))
