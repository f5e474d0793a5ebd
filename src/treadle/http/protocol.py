"""The Twisted protocol for HTTP/1.1: bytes in and out of http/h1.py, one request at a time.

Reactor layer: touched only by the reactor thread; imports no wsgi/* module (the
dispatcher and request-body classes are injected by server.py). It owns the
connection's state (idle, reading a head, reading a body, waiting for the app),
its deadlines (on the shared timer wheel), pipelining (later requests wait, with
reading paused, until the current response is done) and flow control (it is the
transport's streaming producer; a paused transport pauses the response source).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, BinaryIO

from twisted.internet import interfaces, tcp
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from treadle.config import Config
from treadle.deadlines import Deadlines
from treadle.errors import ProtocolError, RequestCancelled
from treadle.http import h1
from treadle.http.events import Data, EndOfMessage, Event, RequestHead
from treadle.timing import RequestRecord

log = logging.getLogger("treadle")

INVALID_HEAD_ANSWER = ("500 Internal Server Error", b"Internal Server Error\n")

SEND_LIMIT_BYTES = 4 * 1024 * 1024
FIRST_REQUEST_GRACE_S = 2.0

IDLE, HEAD, BODY, APP, CLOSED = "idle", "head", "body", "app", "closed"

Headers = list[tuple[str, str]]


def address_tuple(address: Any) -> tuple[str, int] | None:
    if isinstance(address, IPv4Address | IPv6Address):
        return (address.host, address.port)
    return None


def describe_address(address: Any) -> str:
    pair = address_tuple(address)
    if pair is None:
        return "unix"
    return f"{pair[0]}:{pair[1]}"


class HTTPFactory(Factory):
    """Shared state of every connection on one listener."""

    def __init__(
        self,
        config: Config,
        *,
        deadlines: Deadlines,
        dispatch: Callable[[Exchange], None],
        bodies: Any,
        call_from_thread: Callable[..., Any],
        on_finished: Callable[[Exchange], None] | None = None,
        scheme: str = "http",
    ) -> None:
        self.config = config
        self.call_from_thread = call_from_thread
        self.date = h1.http_date(deadlines.now)
        deadlines.on_tick.append(self._tick)
        self.limits = config.limits
        self.timeouts = config.timeouts
        self.deadlines = deadlines
        self.dispatch = dispatch
        self.bodies = bodies
        self.on_finished = on_finished
        self.scheme = scheme
        self.connections: set[HTTPChannel] = set()
        self.draining = False
        self.on_quiet: Callable[[], None] | None = None  # a connection ended or went idle

    def _tick(self, now: float) -> None:
        self.date = h1.http_date(now)

    def buildProtocol(self, addr: Any) -> HTTPChannel:
        return HTTPChannel(self)

    def drain(self) -> None:
        """Stop keeping connections alive: idle ones close now, busy ones after their response.

        A connection accepted just before the drain that has not sent its first request yet
        gets a short grace to send it (it will be answered with Connection: close), so a
        client racing a restart does not see its fresh connection dropped.
        """
        self.draining = True
        grace_deadline = self.deadlines.now + FIRST_REQUEST_GRACE_S
        for channel in list(self.connections):
            if channel.state == IDLE and not channel.served:
                channel.deadline = min(channel.deadline or grace_deadline, grace_deadline)
            elif channel.state in (IDLE, CLOSED):
                channel.close()

    def quiet(self) -> bool:
        """True when no connection has a request in hand or on its way."""
        return not any(
            channel.current is not None
            or channel.state in (HEAD, BODY)
            or (channel.state == IDLE and not channel.served)
            for channel in self.connections
        )


# Not IHalfCloseableProtocol on purpose: a client's FIN while its request runs means
# it went away (as nginx treats it), and the request is cancelled.
@implementer(interfaces.IPushProducer)
class HTTPChannel(Protocol):
    """One HTTP/1.1 connection."""

    transport: Any  # a tcp/unix/TLS transport; typed loosely for the direct-send path

    def __init__(self, factory: HTTPFactory) -> None:
        self.factory = factory
        self.parser = h1.H1Parser(factory.limits)
        self.state = IDLE
        self.deadline: float | None = None
        self.current: Exchange | None = None
        self.backlog: list[Event | ProtocolError] = []
        self.reading_paused = False
        self.served = 0  # responses completed on this connection
        self.producer_paused = False
        self.local: tuple[str, int] | None = None
        self.peer: tuple[str, int] | None = None
        self.peer_text = "-"

    # -- connection lifecycle ------------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        factory.connections.add(self)
        factory.deadlines.watched.add(self)
        self.deadline = factory.deadlines.now + factory.timeouts.header_timeout_s
        transport = self.transport
        self.local = address_tuple(transport.getHost())
        peer = transport.getPeer()
        self.peer = address_tuple(peer)
        self.peer_text = describe_address(peer)
        # Plain TCP/UNIX transports can take a direct send (see send()); TLS cannot.
        self.direct = isinstance(transport, tcp.Connection) and not getattr(transport, "TLS", False)
        if self.direct:
            # Twisted sends at most 128 KiB per syscall and loop turn; a 1 MiB response
            # then takes eight turns. The kernel takes far more at once on loopback/LAN.
            transport.SEND_LIMIT = SEND_LIMIT_BYTES
        transport.registerProducer(self, True)
        if factory.draining:
            self.close()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.state = CLOSED
        self.deadline = None
        self.factory.connections.discard(self)
        self.factory.deadlines.watched.discard(self)
        self.backlog.clear()
        current, self.current = self.current, None
        if current is not None:
            current.connection_lost()
        if self.factory.on_quiet is not None:
            self.factory.on_quiet()

    def send(self, data: bytes) -> None:
        """Write to the client, trying the socket at once when nothing is queued.

        Twisted's write() only buffers and registers for writability: two epoll_ctl
        calls and a loop turn per response. When the transport's buffer is empty we
        send directly and hand Twisted only what the socket did not take.
        """
        transport = self.transport
        if (
            self.direct
            and not transport.dataBuffer
            and not transport._tempDataBuffer
            and transport.connected
            and not transport.disconnecting
        ):
            sent = transport.writeSomeData(data)
            if type(sent) is int:
                if sent == len(data):
                    return
                data = data[sent:]
        transport.write(data)

    def close(self) -> None:
        if self.state != CLOSED:
            self.state = CLOSED
            self.deadline = None
            if self.transport is not None:
                self.transport.loseConnection()

    # -- flow control: the transport pauses us when the client reads slowly --

    def pauseProducing(self) -> None:
        self.producer_paused = True
        if self.current is not None:
            self.current.pause()

    def resumeProducing(self) -> None:
        self.producer_paused = False
        if self.current is not None:
            self.current.resume()

    def stopProducing(self) -> None:
        self.close()

    def pause_reading(self) -> None:
        if not self.reading_paused:
            self.reading_paused = True
            self.transport.pauseProducing()

    def resume_reading(self) -> None:
        if self.reading_paused and self.state != CLOSED:
            self.reading_paused = False
            self.transport.resumeProducing()

    # -- incoming bytes ---------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.state == IDLE:
            # RFC 9112 has no deadline, but a head that trickles in forever holds a
            # connection (slowloris): the deadline runs from its first byte and is not
            # extended by later bytes.
            self.state = HEAD
            self.deadline = self.factory.deadlines.now + self.factory.timeouts.header_timeout_s
        self.receive(data)

    def receive(self, data: bytes) -> None:
        if self.state == CLOSED:
            return
        parser = self.parser
        try:
            events: list[Event | ProtocolError] = list(parser.receive_data(data))
        except ProtocolError as error:
            events = [error]
        else:
            # The parser reports an error found after complete events on its next call;
            # ask for it now so a bad pipelined request is answered without waiting.
            if parser.error is not None:
                events.append(parser.error)
        for event in events:
            if self.backlog or (self.current is not None and type(event) is RequestHead):
                self.backlog.append(event)
                self.pause_reading()
            else:
                self.handle(event)
            if self.state == CLOSED:
                return

    def handle(self, event: Event | ProtocolError) -> None:
        kind = type(event)
        if kind is RequestHead:
            self.begin(event)  # type: ignore[arg-type]
        elif kind is Data:
            current = self.current
            if current is not None:
                current.body_data(event.data)  # type: ignore[union-attr]
                body_deadline = self.factory.deadlines.now + self.factory.timeouts.body_timeout_s
                if self.state == BODY:
                    self.deadline = body_deadline
                elif current.streaming_body and not current.body_complete:
                    # The app is reading this body as it arrives: it must keep coming.
                    current.body_deadline = body_deadline
                    request_deadline = current.request_deadline
                    self.deadline = (
                        body_deadline
                        if request_deadline is None
                        else min(body_deadline, request_deadline)
                    )
        elif kind is EndOfMessage:
            if self.current is not None:
                self.current.body_end()
        else:
            self.protocol_error(event)  # type: ignore[arg-type]

    def begin(self, head: RequestHead) -> None:
        factory = self.factory
        bodies = factory.bodies
        if not head.has_body:
            exchange = Exchange(self, head, bodies.EMPTY_BODY, head.content_length or None)
            exchange.body_complete = True
            self.state = APP
            self.current = exchange
            exchange.dispatched = True
            self.deadline = exchange.request_deadline = self.request_deadline()
            factory.dispatch(exchange)
        elif head.expect_continue:
            # RFC 9110 §10.1.1: answer 100 only when the app starts reading the body.
            exchange = Exchange(self, head, None, head.content_length)
            exchange.body = bodies.StreamingBody(
                on_first_read=exchange.continue_from_thread,
                on_drained=exchange.drained_from_thread,
            )
            exchange.streaming_body = True
            self.state = APP
            self.current = exchange
            exchange.dispatched = True
            self.deadline = exchange.request_deadline = self.request_deadline()
            factory.dispatch(exchange)
        else:
            # The reactor reads the whole body (spooled past a threshold) before the app
            # runs, so a slow upload never holds a thread.
            exchange = Exchange(
                self, head, bodies.BufferedBody(factory.limits.spool_threshold_bytes), None
            )
            self.state = BODY
            self.deadline = factory.deadlines.now + factory.timeouts.body_timeout_s
            self.current = exchange

    def protocol_error(self, error: ProtocolError) -> None:
        log.info("%s: %d %s", self.peer_text, error.status, error)
        current = self.current
        if current is not None and current.dispatched and not current.body_complete:
            # The body of a request the app is already reading is broken: its reader
            # fails and the connection closes after its response.
            current.body_failed(error)
            return
        if current is not None and not current.dispatched:
            current.body_failed(error)
            self.current = None
        self.send_error(error.status, str(error))

    def send_error(self, status: int, message: str) -> None:
        """Answer a request that never reached the app, then close. Reactor thread."""
        if self.state == CLOSED:
            return
        self.send(h1.error_response(status, message, date=self.factory.date))
        self.close()

    def request_deadline(self) -> float | None:
        timeout = self.factory.timeouts.request_timeout_s
        return None if timeout is None else self.factory.deadlines.now + timeout

    # -- deadlines --------------------------------------------------------------

    def deadline_passed(self) -> None:
        state = self.state
        if state == IDLE:
            self.close()
        elif state == HEAD:
            log.info("%s: 408 request head not received in time", self.peer_text)
            self.send_error(408, "Request Timeout: the request head took too long")
        elif state == APP and self.current is not None:
            current = self.current
            body_deadline = current.body_deadline
            if body_deadline is not None and not current.body_complete:
                request_deadline = current.request_deadline
                if request_deadline is None or body_deadline < request_deadline:
                    log.info("%s: request body stopped arriving", self.peer_text)
                    current.body_failed(TimeoutError("request body timeout"))
                    self.deadline = request_deadline
                    return
            current.timed_out()
        elif state == BODY and self.current is not None:
            log.info("%s: 408 request body not received in time", self.peer_text)
            self.current.body_failed(TimeoutError("request body timeout"))
            if self.current is not None and not self.current.dispatched:
                self.current = None
                self.send_error(408, "Request Timeout: the request body stopped arriving")

    # -- the end of an exchange -------------------------------------------------

    def exchange_done(self, exchange: Exchange, keep_alive: bool) -> None:
        if self.current is not exchange:
            return
        self.current = None
        self.served += 1
        if not keep_alive or self.factory.draining:
            self.close()
            return
        self.state = IDLE
        self.deadline = self.factory.deadlines.now + self.factory.timeouts.keep_alive_timeout_s
        backlog, self.backlog = self.backlog, []
        for index, event in enumerate(backlog):
            if self.current is not None and type(event) is RequestHead:
                self.backlog = backlog[index:]
                return
            if type(event) is RequestHead and self.state == IDLE:
                self.state = HEAD
            self.handle(event)
            if self.state == CLOSED:
                return
        self.resume_reading()


class Exchange:
    """One request/response on an HTTP/1.1 connection: the bridge's reactor-side sink.

    Every method runs in the reactor thread. Calls that arrive after the exchange
    ended (a late write from a cancelled app) are ignored.
    """

    __slots__ = (
        "channel",
        "head",
        "body",
        "content_length",
        "record",
        "path_info",
        "scheme",
        "local",
        "peer",
        "plan",
        "remaining",
        "done",
        "dispatched",
        "body_complete",
        "streaming_body",
        "continue_sent",
        "paused",
        "on_writable",
        "producer",
        "request_deadline",
        "body_deadline",
    )

    def __init__(
        self, channel: HTTPChannel, head: RequestHead, body: Any, content_length: int | None
    ) -> None:
        self.channel = channel
        self.head = head
        self.body = body
        self.content_length = content_length
        self.record = RequestRecord(
            head.method.decode("latin-1"), head.target.decode("latin-1"), time.perf_counter()
        )
        self.path_info = ""
        self.scheme = channel.factory.scheme
        self.local = channel.local
        self.peer = channel.peer
        self.plan: h1.ResponsePlan | None = None
        self.remaining: int | None = None
        self.done = False
        self.dispatched = False
        self.body_complete = False
        self.streaming_body = False
        self.continue_sent = False
        self.paused = channel.producer_paused
        self.on_writable: Callable[[], None] | None = None
        self.producer: Any = None
        self.request_deadline: float | None = None
        self.body_deadline: float | None = None

    # -- request body -----------------------------------------------------------

    def body_data(self, data: bytes) -> None:
        if self.streaming_body:
            if self.body.feed(data):
                self.channel.pause_reading()
        else:
            self.body.feed(data)

    def body_end(self) -> None:
        if self.body_complete:
            return  # a body-less request: its EndOfMessage follows its head
        self.body_complete = True
        self.body.finish()
        if not self.streaming_body and not self.done:
            self.content_length = self.body.length
            channel = self.channel
            channel.state = APP
            channel.deadline = self.request_deadline = channel.request_deadline()
            self.dispatched = True
            channel.factory.dispatch(self)

    def body_failed(self, error: BaseException) -> None:
        self.body_complete = True  # nothing more will be read for it
        if self.streaming_body:
            self.body.fail(error)
        else:
            self.body.close()

    def timed_out(self) -> None:
        """The request ran past --request-timeout: cancel it; 504 if nothing was sent."""
        record = self.record
        log.warning(
            "request %d %s %s timed out after %.1f s",
            record.request_id,
            record.method,
            record.path,
            self.channel.factory.timeouts.request_timeout_s or 0.0,
        )
        record.cancel_now("request timeout")
        if self.streaming_body and not self.body_complete:
            self.body.fail(RequestCancelled("request timeout"))
        if self.plan is None:
            self.send_error(504, "Gateway Timeout: the application took too long")
        else:
            self.abort("request timeout")

    def continue_from_thread(self) -> None:
        """Called in an app thread on its first read of the body."""
        self.channel.factory.call_from_thread(self.send_continue)

    def drained_from_thread(self) -> None:
        """Called in an app thread when the body buffer has room again."""
        self.channel.factory.call_from_thread(self.channel.resume_reading)

    def send_continue(self) -> None:
        if not self.done and self.plan is None and not self.continue_sent:
            self.continue_sent = True
            self.channel.send(h1.CONTINUE)

    # -- the response: the bridge's sink ----------------------------------------

    def _plan(
        self, status: str, headers: Headers, body: bytes | None, body_length: int | None = None
    ) -> tuple[h1.ResponsePlan, bytes | None]:
        """Plan the app's response head; an invalid head becomes a 500 (with its body)."""
        channel = self.channel
        closing = channel.factory.draining or (self.streaming_body and not self.body_complete)
        try:
            plan = h1.plan_response(
                self.head,
                status,
                headers,
                body_length=body_length if body is None else len(body),
                date=channel.factory.date,
                closing=closing,
            )
            return plan, body
        except ValueError as error:
            log.error(
                "request %d: the app's response head is invalid: %s", self.record.request_id, error
            )
            status, body = INVALID_HEAD_ANSWER
            plan = h1.plan_response(
                self.head,
                status,
                [("Content-Type", "text/plain; charset=utf-8"), ("Connection", "close")],
                body_length=len(body),
                date=channel.factory.date,
                closing=True,
            )
            return plan, body

    def respond(self, status: str, headers: Headers, body: bytes) -> None:
        if self.done:
            return
        plan, body = self._plan(status, headers, body)  # type: ignore[assignment]
        self.plan = plan
        self.record.status = int(plan.head[9:12])
        keep_alive = plan.keep_alive
        if not plan.body_allowed:
            body = b""
        elif plan.content_length is not None and plan.content_length != len(body):
            # The app's Content-Length disagrees with its body: send what it declared
            # at most, and close so the client cannot misread the next response.
            body = body[: plan.content_length]
            keep_alive = False
        self.channel.send(plan.head + body if body else plan.head)
        self.record.bytes_sent = len(body)
        self.end(keep_alive)

    def start(self, status: str, headers: Headers, body_length: int | None = None) -> None:
        if self.done:
            return
        plan, body = self._plan(status, headers, None, body_length)
        if body is not None:
            self.respond(INVALID_HEAD_ANSWER[0], [("Connection", "close")], body)
            return
        self.plan = plan
        self.record.status = int(plan.head[9:12])
        self.remaining = plan.content_length if plan.body_allowed else 0
        self.channel.send(plan.head)

    def write(self, data: bytes) -> None:
        plan = self.plan
        if self.done or plan is None or not plan.body_allowed:
            return
        if self.remaining is not None:
            if len(data) > self.remaining:
                data = data[: self.remaining]
            self.remaining -= len(data)
        if not data:
            return
        self.record.bytes_sent += len(data)
        self.channel.send(h1.encode_chunk(data) if plan.chunked else data)

    def finish(self) -> None:
        plan = self.plan
        if self.done or plan is None:
            return
        keep_alive = plan.keep_alive
        if plan.body_allowed:
            if plan.chunked:
                self.channel.send(h1.LAST_CHUNK)
            elif self.remaining:
                keep_alive = False  # shorter than its Content-Length: the client must see it end
        self.end(keep_alive)

    def abort(self, reason: str) -> None:
        if self.done:
            return
        self.done = True
        self.record.finished_at = time.perf_counter()
        channel = self.channel
        if channel.current is self:
            channel.current = None
        if channel.transport is not None and channel.state != CLOSED:
            channel.state = CLOSED
            channel.transport.abortConnection()
        self.finished()

    def send_file(
        self, status: str, headers: Headers, file: BinaryIO, offset: int, length: int | None
    ) -> None:
        if self.done:
            file.close()
            return
        self.start(status, headers, length)
        if self.plan is None or not self.plan.body_allowed or length == 0:
            file.close()
            self.finish()
            return
        from treadle.static import FileProducer

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

    def pause(self) -> None:
        self.paused = True
        if self.producer is not None:
            self.producer.pauseProducing()

    def resume(self) -> None:
        self.paused = False
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
            [("Content-Type", "text/plain; charset=utf-8"), ("Connection", "close")]
            + (headers or []),
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

    def end(self, keep_alive: bool) -> None:
        self.done = True
        self.record.finished_at = time.perf_counter()
        if not self.body_complete:
            keep_alive = False  # RFC 9112 §9.3: unread body bytes would be misread as a request
        # The connection is idle (or closing) before anyone is told the request ended,
        # so a graceful stop waiting on it sees it finished.
        self.channel.exchange_done(self, keep_alive)
        self.finished()

    def connection_lost(self) -> None:
        if not self.done:
            self.done = True
            self.record.finished_at = time.perf_counter()
            self.record.cancel_now("client went away")
            if self.body is not None:
                if self.streaming_body:
                    self.body.fail(RequestCancelled("client went away"))
                elif not self.dispatched:
                    self.body.close()
            self.finished()

    def finished(self) -> None:
        hook = self.channel.factory.on_finished
        if hook is not None:
            hook(self)
