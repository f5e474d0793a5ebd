"""The only way from an app thread to the reactor: the response channel.

Thread-bridge layer: threading only, no sockets, no transports. An app thread hands
a response to a reactor-side *sink* (the HTTP/1.1 exchange, later an HTTP/2 stream)
through ``call_from_thread``. A whole response crosses in one call. Streamed chunks
are batched: one crossing carries everything written since the last one, and the
app thread blocks once more than ``high_water_bytes`` wait for a slow client, so
memory stays bounded. After the request is cancelled, writes are discarded.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, BinaryIO, Protocol

from treadle.cancel import CancelToken

Headers = list[tuple[str, str]]

log = logging.getLogger("treadle")


class _NeverAwake:
    awake = False


_NEVER_AWAKE = _NeverAwake()


class Outbox:
    """Calls from app threads into the reactor, one reactor wake-up per batch.

    Twisted's callFromThread writes to the waker pipe on every call; under load that
    is a syscall per response on both sides. The outbox wakes the reactor only when
    it goes from empty to non-empty, and the reactor runs everything queued since.

    ``loop``, when given, is a reactor that calls ``drain_pending()`` before it blocks
    (reactor.LeanEPollReactor): while its ``awake`` flag is True it is not woken at all.
    """

    __slots__ = ("_calls", "_armed", "_call_from_thread", "_loop")

    def __init__(self, call_from_thread: Callable[..., Any], loop: Any = None) -> None:
        self._calls: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._armed = False
        self._call_from_thread = call_from_thread
        self._loop = loop if loop is not None else _NEVER_AWAKE

    def __call__(self, f: Callable[..., Any], *args: Any) -> None:
        """Called in any thread."""
        self._calls.append((f, args))
        self.flush()

    def later(self, f: Callable[..., Any], *args: Any) -> None:
        """Queue a call without waking the reactor; the caller promises a flush() soon.

        Called in an app thread for a whole response: the job ends right after, and
        waking the reactor then (not mid-job) saves a GIL hand-off back and forth.
        """
        self._calls.append((f, args))

    def flush(self) -> None:
        """Wake the reactor for queued calls, unless it will run them anyway. Any thread."""
        # Called after the append: a drain that already cleared _armed (or a reactor that
        # already cleared awake) will either see the calls or be followed by this wake-up.
        if self._calls and not self._armed and not self._loop.awake:
            self._armed = True
            self._call_from_thread(self._drain)

    def drain_pending(self) -> bool:
        """Reactor thread: run what is queued; True if anything was."""
        if not self._calls:
            return False
        self._drain()
        return True

    def _drain(self) -> None:
        """Called in the reactor thread."""
        self._armed = False
        calls = self._calls
        while calls:
            f, args = calls.popleft()
            try:
                f(*args)
            except Exception:
                log.exception("error in a call from an app thread")


class ResponseSink(Protocol):
    """What a transport adapter provides. Every method is called in the reactor thread."""

    @property
    def paused(self) -> bool:
        """True while the client is not keeping up (the transport paused us)."""

    on_writable: Callable[[], None] | None  # called by the sink when it resumes

    def respond(self, status: str, headers: Headers, body: bytes) -> None:
        """A whole response: head and body, then the exchange ends."""

    def start(self, status: str, headers: Headers) -> None:
        """The head of a streamed response."""

    def write(self, data: bytes) -> None:
        """Body bytes of a streamed response."""

    def finish(self) -> None:
        """The streamed response is complete."""

    def abort(self, reason: str) -> None:
        """The response cannot be completed: drop the connection."""

    def send_file(
        self, status: str, headers: Headers, file: BinaryIO, offset: int, length: int | None
    ) -> None:
        """Head, then ``length`` bytes of ``file`` from ``offset`` streamed by the reactor."""


class ResponseChannel:
    """App-thread handle on one response. Not shared between requests.

    A whole response (the common case) crosses in one call and needs nothing else; the
    state that streaming needs (a lock, the batch, the high-water wait) is made on the
    first streamed call, in the app thread, before the reactor can see it.
    """

    __slots__ = ("_call", "_call_later", "_sink", "_cancel", "_high_water", "_stream")

    def __init__(
        self,
        call_from_thread: Callable[..., Any],
        sink: ResponseSink,
        cancel: CancelToken,
        high_water_bytes: int = 256 * 1024,
        call_later: Callable[..., Any] | None = None,
    ) -> None:
        self._call = call_from_thread
        # For the last call of a job (a whole response): queued, woken at the job's end.
        self._call_later = call_later or call_from_thread
        self._sink = sink
        self._cancel = cancel
        self._high_water = high_water_bytes
        self._stream: _Stream | None = None

    def respond(self, status: str, headers: Headers, body: bytes) -> None:
        """Called in an app thread: the whole response in one crossing."""
        if not self._cancel.is_set():
            self._call_later(self._sink.respond, status, headers, body)

    def send_file(
        self, status: str, headers: Headers, file: BinaryIO, offset: int, length: int | None
    ) -> None:
        """Called in an app thread: the reactor streams the file; it owns ``file`` now."""
        if self._cancel.is_set():
            file.close()
            return
        self._call_later(self._sink.send_file, status, headers, file, offset, length)

    def abort(self, reason: str) -> None:
        """Called in an app thread: the app failed after the head was sent."""
        self._call(self._sink.abort, reason)

    def start(self, status: str, headers: Headers) -> None:
        """Called in an app thread: the head of a streamed response (sent with the first batch)."""
        self._streaming().start(status, headers)

    def write(self, data: bytes) -> None:
        """Called in an app thread. Blocks while too much waits for a slow client."""
        if not self._cancel.is_set():
            self._streaming().write(data)

    def finish(self) -> None:
        """Called in an app thread: the streamed response is complete."""
        self._streaming().finish()

    def _streaming(self) -> _Stream:
        stream = self._stream
        if stream is None:
            stream = self._stream = _Stream(self._call, self._sink, self._cancel, self._high_water)
        return stream


class _Stream:
    """A streamed response's batch: app threads add to it, the reactor empties it."""

    __slots__ = (
        "_call",
        "_sink",
        "_cancel",
        "_high_water",
        "_low_water",
        "_lock",
        "_cond",
        "_head",
        "_chunks",
        "_buffered",
        "_finished",
        "_scheduled",
        "_started",
        "_waiting",
    )

    def __init__(
        self,
        call_from_thread: Callable[..., Any],
        sink: ResponseSink,
        cancel: CancelToken,
        high_water_bytes: int,
    ) -> None:
        self._call = call_from_thread
        self._sink = sink
        self._cancel = cancel
        self._high_water = high_water_bytes
        self._low_water = high_water_bytes // 2
        self._lock = threading.Lock()
        self._cond: threading.Condition | None = None
        self._head: tuple[str, Headers] | None = None
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._finished = False
        self._scheduled = False
        self._started = False
        self._waiting = False

    def start(self, status: str, headers: Headers) -> None:
        """App thread."""
        with self._lock:
            self._head = (status, headers)
        self._schedule()

    def write(self, data: bytes) -> None:
        """App thread."""
        with self._lock:
            self._chunks.append(data)
            self._buffered += len(data)
            over = self._buffered > self._high_water
        self._schedule()
        if over:
            self._wait_for_drain()

    def finish(self) -> None:
        """App thread."""
        with self._lock:
            self._finished = True
        self._schedule()

    def _schedule(self) -> None:
        with self._lock:
            if self._scheduled:
                return
            self._scheduled = True
        self._call(self._flush)

    def _wait_for_drain(self) -> None:
        """Called in an app thread: wait until the reactor has taken most of the buffer."""
        if self._cond is None:
            self._cond = threading.Condition(self._lock)
        # Registered for this wait only: left on the token, it would hold this stream in a
        # reference cycle (token -> _wake -> stream -> token) after the response ends.
        self._cancel.add_callback(self._wake)
        try:
            with self._cond:
                self._waiting = True
                while self._buffered > self._low_water and not self._cancel.is_set():
                    # The timeout is a safety net only; _flush and _wake notify.
                    self._cond.wait(5.0)
                self._waiting = False
        finally:
            self._cancel.remove_callback(self._wake)

    def _wake(self, _reason: str) -> None:
        """Called in whichever thread cancels the request."""
        if self._cond is not None:
            with self._cond:
                self._cond.notify_all()

    def _flush(self) -> None:
        """Called in the reactor thread: move everything batched so far to the sink."""
        sink = self._sink
        with self._lock:
            self._scheduled = False
            head, self._head = self._head, None
            if sink.paused and not (head and self._finished):
                chunks: list[bytes] = []
                finished = False
            else:
                chunks, self._chunks = self._chunks, []
                finished, self._finished = self._finished, False
                self._buffered = 0
                if self._waiting and self._cond is not None:
                    self._cond.notify_all()
        if head is not None and not self._started:
            self._started = True
            if finished:
                # Everything arrived in one batch: send it as a whole response.
                sink.respond(head[0], head[1], b"".join(chunks))
                return
            sink.start(*head)
        if chunks:
            sink.write(b"".join(chunks) if len(chunks) > 1 else chunks[0])
        if finished:
            sink.finish()
        elif sink.paused and (self._chunks or self._finished):
            sink.on_writable = self._flush
