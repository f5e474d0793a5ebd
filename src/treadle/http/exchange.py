"""One request/response on an HTTP/1.1 connection: the reactor-side sink of the thread bridge.

Reactor layer: every method runs in the reactor thread. It frames the response (via
http/h1_response.py), enforces the app's Content-Length, streams files through a producer,
and reports the end of the exchange to its connection through the small interface in
http/connection.py (an HTTP/2 stream can provide it too). It never imports the
protocol, never writes a connection's fields, never imports wsgi/* and never blocks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, BinaryIO

from twisted.python.failure import Failure

from treadle.http import h1_response
from treadle.http.connection import Connection
from treadle.http.events import RequestHead
from treadle.http.file_producer import FileProducer

log = logging.getLogger("treadle")

Headers = list[tuple[str, str]]


class Exchange:
    """One request/response on an HTTP/1.1 connection: the bridge's reactor-side sink.

    Every method runs in the reactor thread. Calls that arrive after the exchange
    ended (a late write from a cancelled app) are ignored.
    """

    __slots__ = (
        "connection",
        "head",
        "body",
        "content_length",
        "record",
        "path_info",
        "scheme",
        "local",
        "peer",
        "tls_environ",
        "plan",
        "remaining",
        "done",
        "dispatched",
        "body_complete",
        "on_writable",
        "producer",
    )

    def __init__(
        self,
        connection: Connection,
        head: RequestHead,
        body: Any,
        content_length: int | None,
        *,
        body_complete: bool = False,
    ) -> None:
        self.connection = connection
        self.head = head
        self.body = body
        self.content_length = content_length
        self.record = connection.new_record(
            head.method.decode("latin-1"), head.target.decode("latin-1"), time.perf_counter()
        )
        self.path_info = ""
        self.scheme = connection.scheme
        self.local = connection.local
        self.peer = connection.peer
        self.tls_environ = connection.tls_environ
        self.plan: h1_response.ResponsePlan | None = None
        self.remaining: int | None = None
        self.done = False
        self.dispatched = False
        self.body_complete = body_complete
        self.on_writable: Callable[[], None] | None = None
        self.producer: Any = None

    # -- request body -----------------------------------------------------------

    def body_data(self, data: bytes) -> None:
        self.body.feed(data)

    def body_end(self) -> None:
        if self.body_complete:
            return  # a body-less request: its EndOfMessage follows its head
        self.body_complete = True
        self.body.finish()
        if not self.done:
            self.content_length = self.body.length
            self.connection.start_app(self)

    def body_failed(self, error: BaseException) -> None:
        """The body cannot be completed (``error``): the request is dropped unrun."""
        self.body_complete = True  # nothing more will be read for it
        self.body.close()

    def dispatching(self) -> None:
        """The request goes to the dispatcher: its body belongs to the app's job now."""
        self.dispatched = True

    def timed_out(self, after_s: float) -> None:
        """The request ran past --request-timeout: cancel it; 504 if nothing was sent."""
        record = self.record
        log.warning(
            "request %d %s %s timed out after %.1f s",
            record.request_id,
            record.method,
            record.path,
            after_s,
        )
        record.cancel_now("request timeout")
        if self.plan is None:
            self.send_error(504, "Gateway Timeout: the application took too long")
        else:
            self.abort("request timeout")

    # -- the response: the bridge's sink ----------------------------------------

    def _plan(
        self, status: str, headers: Headers, body: bytes | None, body_length: int | None = None
    ) -> tuple[h1_response.ResponsePlan, bytes | None]:
        """Plan the app's response head; an invalid head becomes a 500 (with its body)."""
        connection = self.connection
        closing = connection.draining
        try:
            plan = h1_response.plan_response(
                self.head,
                status,
                headers,
                body_length=body_length if body is None else len(body),
                date=connection.date,
                closing=closing,
            )
            return plan, body
        except ValueError as error:
            log.error(
                "request %d: the app's response head is invalid: %s", self.record.request_id, error
            )
            status, body = h1_response.INTERNAL_ERROR
            plan = h1_response.plan_response(
                self.head,
                status,
                h1_response.ERROR_HEADERS,
                body_length=len(body),
                date=connection.date,
                closing=True,
            )
            return plan, body

    def respond(self, status: str, headers: Headers, body: bytes) -> None:
        if self.done:
            return
        plan, body = self._plan(status, headers, body)  # type: ignore[assignment]
        self.plan = plan
        self.record.status = plan.status
        keep_alive = plan.keep_alive
        if not plan.body_allowed:
            body = b""
        elif plan.content_length is not None and plan.content_length != len(body):
            # The app's Content-Length disagrees with its body: send what it declared
            # at most, and close so the client cannot misread the next response.
            body = body[: plan.content_length]
            keep_alive = False
        self.connection.send(plan.head + body if body else plan.head)
        self.record.bytes_sent = len(body)
        self.end(keep_alive)

    def start(self, status: str, headers: Headers, body_length: int | None = None) -> None:
        if self.done:
            return
        plan, body = self._plan(status, headers, None, body_length)
        if body is not None:
            self.respond(h1_response.INTERNAL_ERROR[0], h1_response.ERROR_HEADERS, body)
            return
        self.plan = plan
        self.record.status = plan.status
        self.remaining = plan.content_length if plan.body_allowed else 0
        self.connection.send(plan.head)

    def write(self, data: bytes) -> None:
        plan = self.plan
        if self.done or plan is None or not plan.body_allowed:
            return
        data = self._counted(data)
        if data:
            self.connection.send(h1_response.encode_chunk(data) if plan.chunked else data)

    def _counted(self, data: bytes) -> bytes:
        """Reactor thread: the part of a body write that goes out (never past the declared
        Content-Length), added to the bytes sent. Shared by every framing."""
        if self.remaining is not None:
            if len(data) > self.remaining:
                data = data[: self.remaining]
            self.remaining -= len(data)
        self.record.bytes_sent += len(data)
        return data

    def finish(self) -> None:
        plan = self.plan
        if self.done or plan is None:
            return
        keep_alive = plan.keep_alive
        if plan.body_allowed:
            if plan.chunked:
                self.connection.send(h1_response.LAST_CHUNK)
            elif self.remaining:
                keep_alive = False  # shorter than its Content-Length: the client must see it end
        self.end(keep_alive)

    def abort(self, reason: str) -> None:
        if self.done:
            return
        self.mark_done()
        self.stop_producer()
        self.connection.abort_exchange(self)
        self.finished()

    def send_file(
        self, status: str, headers: Headers, file: BinaryIO, offset: int, length: int | None
    ) -> None:
        if self.done:
            file.close()
            return
        self.start(status, headers, length)
        self.connection.response_handed_over()
        if self.plan is None or not self.plan.body_allowed or length == 0:
            file.close()
            self.finish()
            return
        producer = FileProducer(file, offset, length if length is not None else -1)
        producer.start(self).addCallbacks(  # type: ignore[arg-type]
            lambda _: self.finish(), self._file_failed
        )

    def _file_failed(self, failure: Failure) -> None:
        if not self.done:
            log.info(
                "request %d: file transfer stopped: %s",
                self.record.request_id,
                failure.getErrorMessage(),
            )
            self.abort("file transfer failed")

    # IConsumer for FileProducer: the exchange frames what the producer writes.
    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer
        if self.paused:
            producer.pauseProducing()

    def unregisterProducer(self) -> None:
        self.producer = None

    @property
    def paused(self) -> bool:
        """True while the client is not keeping up (the transport paused the connection).

        False once the exchange is over: what the bridge still has is dropped, not held.
        """
        return self.connection.sending_paused and not self.done

    def pause(self) -> None:
        if self.producer is not None:
            self.producer.pauseProducing()

    def resume(self) -> None:
        if self.producer is not None:
            self.producer.resumeProducing()
        callback, self.on_writable = self.on_writable, None
        if callback is not None:
            callback()

    def send_error(self, status: int, message: str, headers: Headers | None = None) -> None:
        """A short error answer from the reactor (404 outside the prefix, 503 when full)."""
        body = (message + "\n").encode("utf-8")
        self.respond(
            f"{status} {HTTPStatus(status).phrase}",
            h1_response.ERROR_HEADERS + (headers or []),
            body,
        )

    def send_static(self, response: Any) -> None:
        """Answer from static.py: a small body, or a file streamed by a producer."""
        status = f"{response.status} {HTTPStatus(response.status).phrase}"
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers]
        if response.path is None or not response.length:
            self.respond(status, headers, response.body)
            return
        try:
            file = open(response.path, "rb")  # noqa: SIM115 - the producer closes it
        except OSError as error:
            log.info("static file vanished: %s", error)
            self.send_error(404, "Not Found")
            return
        self.send_file(status, headers, file, response.offset, response.length)

    # -- endings ----------------------------------------------------------------

    def mark_done(self) -> None:
        self.done = True
        self.record.finished_at = time.perf_counter()

    def end(self, keep_alive: bool) -> None:
        self.mark_done()
        if not self.body_complete:
            keep_alive = False  # RFC 9112 §9.3: unread body bytes would be misread as a request
        # The connection is idle (or closing) before anyone is told the request ended,
        # so a graceful stop waiting on it sees it finished.
        self.connection.exchange_done(self, keep_alive)
        self.finished()

    def stop_producer(self) -> None:
        """A file transfer in progress stops and closes its file (the client is gone).

        Also drops the links back from whatever feeds the response (the producer, the
        bridge's flush): those are reference cycles through this exchange.
        """
        self.on_writable = None
        producer, self.producer = self.producer, None
        if producer is not None:
            producer.stopProducing()

    def connection_lost(self) -> None:
        if not self.done:
            self.mark_done()
            self.stop_producer()
            self.record.cancel_now("client went away")
            if not self.dispatched:
                self.body.close()  # once dispatched, the app's job closes it
            self.finished()

    def finished(self) -> None:
        self.connection.exchange_finished(self)
