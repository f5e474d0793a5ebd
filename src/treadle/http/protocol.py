"""The Twisted protocol for HTTP/1.1: bytes in and out of http/h1.py, one request at a time.

Each request/response is an Exchange (http/exchange.py), the thread bridge's sink;
HTTPChannel is the exchange's Connection (http/connection.py), and only this module
writes its own state.

Reactor layer: touched only by the reactor thread; imports no wsgi/* module (the
dispatcher and request-body classes are injected by server.py). It owns the
connection's state (idle, reading a head, reading a body, waiting for the app),
its deadlines (on the shared timer wheel), pipelining (later requests wait, with
reading paused, until the current response is done) and flow control (it is the
transport's streaming producer; a paused transport pauses the response source and
holds back the next pipelined request, and a client that takes nothing for
--send-timeout is dropped). --request-timeout runs only while the app works: it stops
while the client is not taking the response. The factory counts connections and,
at --max-connections, has the listening ports paused (server.py does that).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from twisted.internet import interfaces
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from treadle import twisted_internals
from treadle.config import Config
from treadle.deadlines import Deadlines
from treadle.errors import ProtocolError
from treadle.http import h1, h1_response
from treadle.http.events import Data, EndOfMessage, Event, RequestHead
from treadle.http.exchange import Exchange

try:
    import fcntl
    import termios

    _OUTQ: int | None = termios.TIOCOUTQ  # SIOCOUTQ: unacknowledged bytes in a TCP send queue
except (ImportError, AttributeError):  # not on this platform
    _OUTQ = None

log = logging.getLogger("treadle")

# A connection's states: waiting for a request, reading its head, reading its body, the
# request is with the app (or its response is being sent), closed.
IDLE, HEAD, BODY, APP, CLOSED = "idle", "head", "body", "app", "closed"
# The connection speaks HTTP/2: an H2Channel (http/h2_protocol.py) has taken it over.
H2 = "h2"

SEND_LIMIT_BYTES = 4 * 1024 * 1024
FIRST_REQUEST_GRACE_S = 2.0
FULL_LOG_INTERVAL_S = 60.0  # at --max-connections: one warning a minute at most
# After an error answer with the request still arriving: how long to read and discard it
# before closing for good (nginx's lingering_timeout; Apache lingers 2 s).
LINGER_S = 5.0


Headers = list[tuple[str, str]]


def address_tuple(address: Any) -> tuple[str, int] | None:
    if isinstance(address, IPv4Address | IPv6Address):
        return (address.host, address.port)
    return None


def unsent_bytes(transport: Any) -> int | None:
    """Bytes sent to a client that it has not taken yet; None if that cannot be told.

    Twisted's buffer and the kernel's send queue both count: a slow reader frees room in
    the kernel's queue long before the socket is writable again (Linux waits for half of
    it). TLS wraps the TCP transport: the encrypted bytes there show the client's progress.
    """
    buffered = twisted_internals.buffered_bytes(transport)
    if buffered is None:
        return None
    transport, unsent = buffered
    if _OUTQ is None:
        return unsent
    try:
        queued = fcntl.ioctl(transport.fileno(), _OUTQ, b"\0\0\0\0")
    except (OSError, ValueError):
        return unsent  # a closing socket: Twisted's buffer alone tells
    return unsent + int.from_bytes(queued, sys.byteorder, signed=True)


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
        records: Callable[[str, str, float], Any],
        on_finished: Callable[[Exchange], None] | None = None,
        scheme: str = "http",
        max_connections: int = 0,
        accepting: Callable[[bool], None] | None = None,
        h2: Any = None,
    ) -> None:
        self.config = config
        # h2_protocol.H2Support: decides per connection whether it speaks HTTP/2 (None: never).
        self.h2 = h2
        self.date = h1_response.http_date(deadlines.now)
        deadlines.on_tick.append(self._tick)
        self.limits = config.limits
        self.timeouts = config.timeouts
        self.deadlines = deadlines
        self.dispatch = dispatch
        self.bodies = bodies
        self.records = records  # timing.RequestRecord, injected: the reactor never imports it
        self.on_finished = on_finished
        self.scheme = scheme
        self.connections: set[HTTPChannel] = set()
        # Connections whose client is not taking what we send (the transport paused us).
        self.stalled: set[HTTPChannel] = set()
        self.draining = False
        self.on_quiet: Callable[[], None] | None = None  # a connection ended or went idle
        self.max_connections = max_connections  # 0: no limit
        # Pauses (False) and resumes (True) accepting on the listening ports.
        self.accepting = accepting
        self.full = False
        self.full_logged_at = -FULL_LOG_INTERVAL_S

    def _tick(self, now: float) -> None:
        self.date = h1_response.http_date(now)
        if self.stalled:
            self.check_stalled(now)

    def check_stalled(self, now: float) -> None:
        """Drop connections whose client took nothing for --send-timeout (once a tick)."""
        limit = self.timeouts.send_timeout_s
        for channel in list(self.stalled):
            unsent = unsent_bytes(channel.transport)
            if unsent is None:
                continue
            if channel.unsent is None or unsent < channel.unsent:
                channel.unsent = unsent  # the client took some: it is slow, not gone
                channel.progress_at = now
            elif now - channel.progress_at >= limit:
                log.info(
                    "%s: client read nothing for %.0f s with %d bytes waiting; dropped",
                    channel.peer_text,
                    now - channel.progress_at,
                    unsent,
                )
                self.stalled.discard(channel)
                channel.transport.abortConnection()

    def buildProtocol(self, addr: Any) -> Protocol:
        if self.max_connections and len(self.connections) >= self.max_connections:
            # Twisted accepts several connections per wake-up: those that come after the
            # one that reached the limit are answered at once and closed.
            return OverLimit(self.date)
        return HTTPChannel(self)

    def opened(self, channel: HTTPChannel) -> None:
        """A connection is made; at --max-connections, stop accepting (clients wait queued)."""
        connections = self.connections
        connections.add(channel)
        if self.max_connections and len(connections) >= self.max_connections and not self.full:
            self.full = True
            if self.accepting is not None:
                self.accepting(False)
            now = self.deadlines.now
            if now - self.full_logged_at >= FULL_LOG_INTERVAL_S:
                self.full_logged_at = now
                log.warning(
                    "%d connections open (--max-connections): new clients wait until one closes",
                    len(connections),
                )

    def closed(self, channel: HTTPChannel) -> None:
        self.connections.discard(channel)
        if self.full and len(self.connections) < self.max_connections:
            self.full = False
            if self.accepting is not None:
                self.accepting(True)

    def drain(self, every_idle: bool = False) -> None:
        """Stop keeping connections alive: busy ones close after their response.

        An idle connection that may be sending a request right now gets a short grace to
        send it (answered with Connection: close) instead of being closed under it, which
        a client that does not retry sees as a failed request (RFC 9112 §9.3.1 lets a
        server close, but a restart should not fail a client that is busy). That is a
        connection accepted but not yet used, or one that finished a response within the
        last tick. Connections idle for longer close now, unless ``every_idle``: a stop by
        SIGTERM, often behind a balancer (nginx, HAProxy) that keeps idle connections and
        may pick any of them, one idle for seconds too, until its checks take this host
        out. Those get the grace as well; a stop then waits for them up to that long.
        """
        self.draining = True
        recent = self.deadlines.now - self.deadlines.tick_s
        for channel in list(self.connections):
            if channel.state == H2:
                channel.h2.drain()  # GOAWAY: its open streams finish, then it closes
            elif channel.state == IDLE and (
                every_idle or not channel.served or channel.done_at >= recent
            ):
                channel.enter_grace()
            elif channel.state in (IDLE, CLOSED):
                channel.close()

    def quiet(self) -> bool:
        """True when no connection has a request in hand or on its way."""
        return not any(
            channel.current is not None
            or channel.state in (HEAD, BODY)
            or (channel.state == IDLE and (not channel.served or channel.in_grace))
            or (channel.state == H2 and channel.h2.busy())
            for channel in self.connections
        )


class OverLimit(Protocol):
    """A connection accepted past --max-connections: 503 and close, nothing read."""

    transport: Any

    def __init__(self, date: bytes) -> None:
        self.date = date

    def connectionMade(self) -> None:
        self.transport.write(
            h1_response.error_response(
                503, "Service Unavailable: too many connections", date=self.date
            )
        )
        self.transport.loseConnection()


# Not IHalfCloseableProtocol on purpose: a client's FIN while its request runs means
# it went away (as nginx treats it), and the request is cancelled.
@implementer(interfaces.IPushProducer, interfaces.IHandshakeListener)
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
        self.done_at = 0.0  # the coarse clock's time when the last response ended
        self.in_grace = False  # idle at a drain, given time to send one more request
        self.lingering = False  # closed for writing, dropping what still comes in
        self.producer_paused = False
        self.unsent: int | None = None  # while stalled: the least unsent byte count seen
        self.progress_at = 0.0  # while stalled: when the client last took something
        # While the app's clock is stopped (the client is not taking the response): since when.
        self.paused_at: float | None = None
        # --request-timeout for the request with the app; None once its work is over.
        self.app_deadline: float | None = None
        self.scheme = factory.scheme
        self.local: tuple[str, int] | None = None
        self.peer: tuple[str, int] | None = None
        self.peer_text = "-"
        # SSL_* environ keys of a TLS connection (tls_environ.py), once its handshake is over.
        self.tls_environ: dict[str, str] | None = None
        # The connection's first bytes while it may turn out to speak HTTP/2 (None: HTTP/1.1).
        self.first: bytes | None = b"" if factory.h2 is not None else None
        self.h2: Any = None  # the H2Channel that took the connection over

    # -- connection lifecycle ------------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        factory.opened(self)
        factory.deadlines.watched.add(self)
        self.deadline = factory.deadlines.now + factory.timeouts.header_timeout_s
        transport = self.transport
        self.local = address_tuple(transport.getHost())
        peer = transport.getPeer()
        self.peer = address_tuple(peer)
        self.peer_text = describe_address(peer)
        # Per connection, not per factory: one factory serves every listener, tcp: and ssl:.
        self.scheme = "https" if interfaces.ISSLTransport.providedBy(transport) else factory.scheme
        # Plain TCP/UNIX transports can take a direct send (see send()); TLS cannot.
        # Twisted sends at most 128 KiB per syscall and loop turn; a 1 MiB response
        # then takes eight turns. The kernel takes far more at once on loopback/LAN.
        self.direct = twisted_internals.direct_send(transport, SEND_LIMIT_BYTES)
        transport.registerProducer(self, True)
        if factory.draining:
            # Accepted from the queue as the server stops (listen.stop_listening): its
            # client may have sent a request already. That one is answered, with close.
            self.enter_grace()

    def enter_grace(self) -> None:
        """The server drains: one more request may come (answered with Connection: close)
        within FIRST_REQUEST_GRACE_S, or sooner if an earlier deadline says so."""
        self.in_grace = True
        grace = self.factory.deadlines.now + FIRST_REQUEST_GRACE_S
        self.deadline = grace if self.deadline is None else min(self.deadline, grace)

    def handshakeCompleted(self) -> None:  # noqa: N802 - Twisted's name
        """The TLS handshake is over (before any request): read what the app may see of it."""
        self.tls_environ = self.transport.tls_environ()  # tls.ServerTLSConnection

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.state = CLOSED
        self.deadline = None
        self.factory.closed(self)
        self.factory.stalled.discard(self)
        self.factory.deadlines.watched.discard(self)
        self.backlog.clear()
        self.parser.close()
        current, self.current = self.current, None
        if current is not None:
            current.connection_lost()
        if self.h2 is not None:
            self.h2.connection_lost()
        if self.factory.on_quiet is not None:
            self.factory.on_quiet()

    def send(self, data: bytes) -> None:
        """Write to the client: at once when nothing is queued (see twisted_internals)."""
        if self.direct:
            twisted_internals.write_now(self.transport, data)
        else:
            self.transport.write(data)

    def close(self) -> None:
        if self.state != CLOSED:
            if self.h2 is not None:
                self.h2.goodbye()  # GOAWAY first: the client knows no stream was lost
            self.state = CLOSED
            self.deadline = None
            if self.transport is not None:
                self.transport.loseConnection()
        elif self.lingering:  # a stop, or the linger's end: do not wait any longer
            self.lingering = False
            self.deadline = None
            self.transport.loseConnection()

    # -- flow control: the transport pauses us when the client reads slowly --

    def pauseProducing(self) -> None:
        self.producer_paused = True
        self.unsent = None
        self.progress_at = self.factory.deadlines.now
        self.factory.stalled.add(self)
        if self.h2 is not None:
            self.h2.pause_sending()
        if self.current is not None:
            if self.state == APP:
                self.stop_app_clock()
            self.current.pause()

    def resumeProducing(self) -> None:
        self.producer_paused = False
        self.factory.stalled.discard(self)
        paused_at, self.paused_at = self.paused_at, None
        if self.h2 is not None:
            self.h2.resume_sending()
        current = self.current
        if current is not None:
            if self.state == APP and self.app_deadline is not None and paused_at is not None:
                waited = self.factory.deadlines.clock.seconds() - paused_at
                self.app_deadline += max(waited, 0.0)
                self.deadline = self.app_deadline
            current.resume()
        elif self.state == IDLE:
            self.carry_on()  # the client took our last response: start what it sent since

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
        state = self.state
        if state == H2:
            self.h2.dataReceived(data)
            return
        if state == IDLE:
            if self.first is not None:
                # The connection's first bytes: HTTP/2 by ALPN or by its preface (--h2c)?
                data = self.first + data
                wanted = self.factory.h2.wants(self.transport, data)
                if wanted is None:  # a prefix of the preface so far
                    self.first = data
                    return
                self.first = None
                if wanted:
                    self.switch_to_h2().start(data)
                    return
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
            # A fresh list per call: ours to extend.
            events: list[Event | ProtocolError] = parser.receive_data(data)  # type: ignore[assignment]
        except ProtocolError as error:
            events = [error]
        else:
            # The parser reports an error found after complete events on its next call;
            # ask for it now so a bad pipelined request is answered without waiting.
            if parser.error is not None:
                events.append(parser.error)
        for event in events:
            if self.backlog or (type(event) is RequestHead and self.must_wait()):
                if self.current is None and self.state == HEAD:
                    # Whole, but the client is not reading our responses: it waits idle
                    # (no head deadline) until the transport resumes us.
                    self.state = IDLE
                    self.deadline = None
                self.backlog.append(event)
                self.pause_reading()
            else:
                self.handle(event)
            if self.state == CLOSED or self.state == H2:
                return

    def handle(self, event: Event | ProtocolError) -> None:
        kind = type(event)
        if kind is RequestHead:
            self.begin(event)  # type: ignore[arg-type]
        elif kind is Data:
            current = self.current
            if current is not None:
                current.body_data(event.data)  # type: ignore[union-attr]
                if self.state == BODY:
                    timeouts = self.factory.timeouts
                    self.deadline = self.factory.deadlines.now + timeouts.body_timeout_s
        elif kind is EndOfMessage:
            if self.current is not None:
                self.current.body_end()
        else:
            self.protocol_error(event)  # type: ignore[arg-type]

    def switch_to_h2(self) -> Any:
        """From now on an H2Channel reads and writes this connection."""
        self.state = H2
        self.deadline = None
        self.parser.close()
        self.h2 = self.factory.h2.channel(self)
        return self.h2

    def begin(self, head: RequestHead) -> None:
        factory = self.factory
        if not self.served and factory.h2 is not None and factory.h2.wants_upgrade(head):
            self.backlog.clear()  # the client waits for the 101 before it sends more
            self.switch_to_h2().start_upgraded(head)
            return
        bodies = factory.bodies
        if not head.has_body:
            exchange = Exchange(
                self, head, bodies.EMPTY_BODY, head.content_length or None, body_complete=True
            )
            self.current = exchange
            self.start_app(exchange)
        else:
            # The reactor reads the whole body (spooled past a threshold) before the app
            # runs, so a slow upload never holds a thread, with or without 100-continue.
            exchange = Exchange(
                self, head, bodies.BufferedBody(factory.limits.spool_threshold_bytes), None
            )
            self.state = BODY
            self.deadline = factory.deadlines.now + factory.timeouts.body_timeout_s
            self.current = exchange
            if head.expect_continue:
                # RFC 9110 §10.1.1: the head passed the limits (an over-long Content-Length
                # got 413 from the parser, before this), so the client may send the body.
                # The reactor answers, as gunicorn and nginx do: waiting for the app's
                # first read would hold a thread while the body trickles in.
                self.send(h1_response.CONTINUE)

    def start_app(self, exchange: Exchange) -> None:
        """Hand the request to the dispatcher; from now on only --request-timeout applies."""
        self.state = APP
        exchange.dispatching()
        self.deadline = self.app_deadline = self.request_deadline()
        if self.producer_paused:
            self.stop_app_clock()
        self.factory.dispatch(exchange)

    def stop_app_clock(self) -> None:
        """--request-timeout bounds the app's work: while the client is not taking the
        response, the wait is the client's (--send-timeout governs it)."""
        if self.paused_at is None:
            self.paused_at = self.factory.deadlines.clock.seconds()
        self.deadline = None

    def protocol_error(self, error: ProtocolError) -> None:
        current = self.current
        if current is not None and current.body_complete:
            # The error belongs to a later request (this one's body is whole): RFC 9112
            # §9.3.2 has responses go in request order, so it waits behind the response
            # in flight and is answered (400 + close) once that is sent. A dead parser
            # raises the same error again on later bytes: keep it once.
            if not any(event is error for event in self.backlog):
                self.backlog.append(error)
            self.pause_reading()
            return
        log.info("%s: %d %s", self.peer_text, error.status, error)
        self.refuse(error.status, str(error), error)

    def refuse(self, status: int, message: str, error: BaseException) -> None:
        """Answer with an error and close; a request still being read is dropped unrun."""
        current = self.current
        if current is not None and not current.dispatched:
            current.body_failed(error)
            self.current = None
        self.send_error(status, message)

    def send_error(self, status: int, message: str) -> None:
        """Answer a request that never reached the app, then close. Reactor thread."""
        if self.state == CLOSED:
            return
        self.send(h1_response.error_response(status, message, date=self.factory.date))
        self.close_lingering()

    def close_lingering(self) -> None:
        """Close, but keep reading (and dropping) what the client still sends for a while.

        RFC 9112 §9.6: closing a socket with unread input makes the kernel reset the
        connection, and the reset can destroy our response before the client reads it. A
        client still sending a body we refused (a 413 answered from the head) then sees
        "connection reset" or a broken pipe, and nginx answers 502, instead of our 4xx.
        So: send FIN after the response, read until the client closes or LINGER_S pass.
        TLS cannot half-close; it closes at once as before.
        """
        transport = self.transport
        if (
            self.state == CLOSED
            or transport is None
            or interfaces.ISSLTransport.providedBy(transport)
            or not interfaces.ITCPTransport.providedBy(transport)
        ):
            self.close()
            return
        self.state = CLOSED  # receive() drops whatever comes in from now on
        self.lingering = True
        transport.loseWriteConnection()
        if self.reading_paused:
            self.reading_paused = False
            transport.resumeProducing()
        self.deadline = self.factory.deadlines.now + LINGER_S

    def response_handed_over(self) -> None:
        """The app's work is done (a file the reactor streams): no request timeout after."""
        if self.current is not None and self.state == APP:
            self.app_deadline = None
            self.deadline = None

    # -- the rest of the Connection interface (http/connection.py) ---------------

    @property
    def date(self) -> bytes:
        return self.factory.date

    @property
    def draining(self) -> bool:
        return self.factory.draining

    @property
    def sending_paused(self) -> bool:
        return self.producer_paused

    def abort_exchange(self, exchange: Exchange) -> None:
        if self.current is exchange:
            self.current = None
        if self.transport is not None and self.state != CLOSED:
            self.state = CLOSED
            self.deadline = None
            self.transport.abortConnection()

    def new_record(self, method: str, target: str, started: float) -> Any:
        return self.factory.records(method, target, started)

    def exchange_finished(self, exchange: Exchange) -> None:
        hook = self.factory.on_finished
        if hook is not None:
            hook(exchange)

    def request_deadline(self) -> float | None:
        timeout = self.factory.timeouts.request_timeout_s
        return None if timeout is None else self.factory.deadlines.now + timeout

    # -- deadlines --------------------------------------------------------------

    def deadline_passed(self) -> None:
        state = self.state
        if state in (IDLE, CLOSED):  # idle too long, or done lingering (close_lingering)
            self.close()
        elif state == HEAD:
            log.info("%s: 408 request head not received in time", self.peer_text)
            self.send_error(408, "Request Timeout: the request head took too long")
        elif state == APP and self.current is not None:
            self.current.timed_out(self.factory.timeouts.request_timeout_s or 0.0)
        elif state == BODY and self.current is not None:
            log.info("%s: 408 request body not received in time", self.peer_text)
            self.refuse(
                408,
                "Request Timeout: the request body stopped arriving",
                TimeoutError("request body timeout"),
            )

    # -- the end of an exchange -------------------------------------------------

    def exchange_done(self, exchange: Exchange, keep_alive: bool) -> None:
        if self.current is not exchange:
            return
        self.current = None
        self.paused_at = None  # the app's clock belonged to this exchange
        self.served += 1
        self.done_at = self.factory.deadlines.now
        if not keep_alive:
            self.close()
            return
        self.state = IDLE
        if self.factory.draining:
            # The head went out before the stop and promised to keep the connection: a client
            # (a balancer's pool above all) may be sending its next request right now.
            # Closing under it fails that request; it gets the grace of drain() instead, and
            # its answer carries Connection: close.
            self.in_grace = True
        self.carry_on()

    def must_wait(self) -> bool:
        """A new request waits while one runs, or while the client is not taking our responses.

        Starting it while the transport is paused would pile responses up in memory;
        resumeProducing() carries on, and --send-timeout drops a client that never reads.
        """
        return self.current is not None or self.producer_paused

    def carry_on(self) -> None:
        """Idle after a response: start the requests the client pipelined, then read on."""
        if self.producer_paused:
            self.deadline = None  # waiting on the client to read, not to send
            return
        idle_s = self.factory.timeouts.keep_alive_timeout_s
        if self.in_grace:
            idle_s = min(idle_s, FIRST_REQUEST_GRACE_S)
        self.deadline = self.factory.deadlines.now + idle_s
        backlog, self.backlog = self.backlog, []
        for index, event in enumerate(backlog):
            if type(event) is RequestHead and self.must_wait():
                self.backlog = backlog[index:]
                return
            self.handle(event)
            if self.state == CLOSED:
                return
        self.resume_reading()
