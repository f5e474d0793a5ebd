"""One HTTP/2 stream's request/response on the reactor: an Exchange framed by http/h2.py.

Reactor layer: every method runs in the reactor thread; it never blocks and imports no
wsgi/* module. It replaces only the HTTP/1.1 framing of http/exchange.py (the head, the
body, the end, ``paused`` for flow control, file streaming); everything else (the body
spool, timeouts, cancellation, the bridge's calls) is the HTTP/1.1 code. Its connection
is the stream's H2Channel (http/h2_protocol.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, BinaryIO

from treadle.errors import ProtocolError
from treadle.http import h1_response, h2
from treadle.http.events import RequestHead
from treadle.http.exchange import Exchange, Headers
from treadle.http.file_producer import FileProducer
from treadle.http.h2_heads import response_head

if TYPE_CHECKING:
    from treadle.http.h2_protocol import H2Channel

log = logging.getLogger("treadle")


class H2Exchange(Exchange):
    """One HTTP/2 stream's request/response: the bridge's sink, framed by http/h2.py."""

    __slots__ = ("sid", "deadline")

    connection: H2Channel

    def __init__(
        self,
        channel: H2Channel,
        sid: int,
        head: RequestHead,
        body: Any,
        content_length: int | None,
        *,
        body_complete: bool = False,
    ) -> None:
        super().__init__(channel, head, body, content_length, body_complete=body_complete)
        self.sid = sid
        self.deadline: float | None = None

    def _plan2(
        self, status: str, headers: Headers, body_length: int | None
    ) -> tuple[h1_response.ResponsePlan, list[tuple[bytes, bytes]]] | None:
        """The response head for HTTP/2, or None after answering 500 for an invalid one."""
        try:
            code, fields, length = response_head(status, headers, self.connection.date)
        except (ValueError, UnicodeEncodeError) as error:
            log.error(
                "request %d: the app's response head is invalid: %s", self.record.request_id, error
            )
            status, body = h1_response.INTERNAL_ERROR
            self.respond(status, [("Content-Type", "text/plain; charset=utf-8")], body)
            return None
        body_allowed = not (self.head.method == b"HEAD" or code == 204 or code == 304)
        if code == 204:
            fields = [(k, v) for k, v in fields if k != b"content-length"]
            length = None
        elif length is None and body_length is not None and (body_length or body_allowed):
            # A whole body's length (for HEAD: the GET body the app produced, as HTTP/1.1).
            fields.append((b"content-length", b"%d" % body_length))
            length = body_length
        plan = h1_response.ResponsePlan(code, b"", False, body_allowed, True, length)
        return plan, fields

    def respond(self, status: str, headers: Headers, body: bytes) -> None:
        if self.done:
            return
        planned = self._plan2(status, headers, len(body))
        if planned is None:
            return
        plan, fields = planned
        self.plan = plan
        self.record.status = plan.status
        session = self.connection.session
        assert session is not None
        if not plan.body_allowed:
            body = b""
        elif plan.content_length is not None and plan.content_length != len(body):
            body = body[: plan.content_length]  # at most what it declared
        session.send_head(self.sid, plan.status, fields, end_stream=not body)
        if body:
            session.send_whole(self.sid, body)
        self.record.bytes_sent = len(body)
        self.end(True)

    def start(self, status: str, headers: Headers, body_length: int | None = None) -> None:
        if self.done:
            return
        planned = self._plan2(status, headers, body_length)
        if planned is None:
            return
        plan, fields = planned
        self.plan = plan
        self.record.status = plan.status
        self.remaining = plan.content_length if plan.body_allowed else 0
        session = self.connection.session
        assert session is not None
        session.send_head(self.sid, plan.status, fields, end_stream=not plan.body_allowed)
        self.connection.flush()

    def write(self, data: bytes) -> None:
        plan = self.plan
        if self.done or plan is None or not plan.body_allowed:
            return
        data = self._counted(data)
        if not data:
            return
        channel = self.connection
        assert channel.session is not None
        channel.session.send_body(self.sid, data, end_stream=False)
        channel.pump()
        if self.producer is not None and self.paused:
            self.producer.pauseProducing()

    def finish(self) -> None:
        plan = self.plan
        if self.done or plan is None:
            return
        if plan.body_allowed and self.remaining:
            # Shorter than its Content-Length: the client must not take it as whole.
            self.abort("response shorter than its Content-Length")
            return
        session = self.connection.session
        assert session is not None
        if plan.body_allowed:
            session.send_body(self.sid, b"", end_stream=True)
        self.end(True)

    @property
    def paused(self) -> bool:
        if self.done:
            return False
        channel = self.connection
        if channel.transport_paused:
            return True
        session = channel.session
        return session is not None and session.buffered(self.sid) >= h2.STREAM_BUFFER_BYTES

    def send_file(
        self, status: str, headers: Headers, file: BinaryIO, offset: int, length: int | None
    ) -> None:
        if self.done:
            file.close()
            return
        self.start(status, headers, length)
        # The app's work is over: its request timeout stops (the reactor streams the file).
        self._drop_deadline()
        if self.plan is None or not self.plan.body_allowed or length == 0:
            file.close()
            self.finish()
            return
        producer = FileProducer(file, offset, length if length is not None else -1)
        producer.start(self).addCallbacks(  # type: ignore[arg-type]
            lambda _: self.finish(), self._file_failed
        )

    def _drop_deadline(self) -> None:
        self.deadline = None
        self.connection.factory.deadlines.watched.discard(self)

    def deadline_passed(self) -> None:
        """Called by the timer wheel: --request-timeout while the app works, or the body
        stopped arriving (408)."""
        if self.done:
            return
        if self.dispatched:
            self.timed_out(self.connection.factory.timeouts.request_timeout_s or 0.0)
            return
        self.connection.refuse(
            self.sid, ProtocolError("Request Timeout: the request body stopped arriving", 408)
        )
