"""HTTP/2 on the reactor: one H2Channel per connection, one H2Exchange per stream.

Reactor layer: touched only by the reactor thread; imports no wsgi/* module and never
blocks. http/protocol.py's HTTPChannel accepts every connection and, on its first bytes,
asks ``H2Support`` whether it speaks HTTP/2 (ALPN "h2" on TLS; with --h2c the client
preface, or ``Upgrade: h2c`` on its first request); from then on it passes bytes, flow
control and endings to an H2Channel. Each stream is an Exchange (http/exchange.py) whose
framing goes through http/h2.py instead of HTTP/1.1's, so the dispatcher, static files,
the pool, the thread bridge and cancellation are the same for both protocols.

Flow control: a stream counts as paused (the bridge's ``sink.paused``) while more than
h2.STREAM_BUFFER_BYTES of its response wait for the client's window, or while the
transport is paused; the app thread then blocks at the bridge's high-water mark exactly
as for a slow HTTP/1.1 client, and resumes when a WINDOW_UPDATE lets the bytes out.
"""

from __future__ import annotations

import dataclasses
import logging
from http import HTTPStatus
from typing import Any

from h2.errors import ErrorCodes
from twisted.internet import interfaces

from treadle.errors import ProtocolError
from treadle.http import h2
from treadle.http.events import Data, EndOfMessage, RequestHead
from treadle.http.exchange import Exchange
from treadle.http.h2_exchange import H2Exchange
from treadle.http.h2_floods import PREFACE
from treadle.http.h2_heads import response_head

log = logging.getLogger("treadle")

SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
LINGER_S = 1.0  # after an error GOAWAY, how long the client's frames are read and dropped
_UPGRADE_FIELDS = frozenset([b"connection", b"upgrade", b"http2-settings"])


class H2Support:
    """Shared by every connection of a factory: picks HTTP/2 and makes its channels."""

    def __init__(self, h2_limits: h2.H2Limits, *, h2c: bool = False) -> None:
        self.h2_limits = h2_limits
        self.h2c = h2c

    def wants(self, transport: Any, data: bytes) -> bool | None:
        """Does a connection whose first bytes are ``data`` speak HTTP/2? None: need more."""
        if interfaces.ISSLTransport.providedBy(transport):
            # RFC 9113 §3.2: over TLS, HTTP/2 only when ALPN chose "h2".
            return getattr(transport, "negotiatedProtocol", None) == b"h2"
        if not self.h2c:
            return False
        # RFC 9113 §3.3: a client with prior knowledge starts with the preface at once.
        if data.startswith(PREFACE):
            return True
        return None if PREFACE.startswith(data) else False

    def wants_upgrade(self, head: RequestHead) -> bool:
        """An HTTP/1.1 request asking for h2c (RFC 7540 §3.2), served over HTTP/2.

        Only a request without a body is upgraded (RFC 9110 §7.8 lets a server ignore
        Upgrade); one with a body is answered over HTTP/1.1, as servers commonly do.
        """
        if not self.h2c or head.has_body or head.http_version != "1.1":
            return False
        upgrade = head.header(b"upgrade")
        if upgrade is None or head.header(b"http2-settings") is None:
            return False
        return b"h2c" in [token.strip().lower() for token in upgrade.split(b",")]

    def channel(self, http_channel: Any) -> H2Channel:
        return H2Channel(http_channel, self.h2_limits)


class H2Channel:
    """One HTTP/2 connection: the HTTPChannel that accepted it passes everything here.

    It is the Connection (http/connection.py) of each of its streams' exchanges.
    """

    def __init__(self, http_channel: Any, h2_limits: h2.H2Limits) -> None:
        self.http_channel = http_channel  # close() and the transport stay its own
        factory = self.factory = http_channel.factory
        self.transport = http_channel.transport
        self.h2_limits = h2_limits
        self.scheme = http_channel.scheme
        self.local = http_channel.local
        self.peer = http_channel.peer
        self.peer_text = http_channel.peer_text
        # TLS facts (SSL_* environ keys) of the connection, shared by its streams.
        self.tls_environ = getattr(http_channel, "tls_environ", None)
        self.tls_environ = http_channel.tls_environ  # the handshake is over (ALPN chose h2)
        self.session: h2.H2Session | None = None
        self.streams: dict[int, H2Exchange] = {}
        self.transport_paused = False
        self.closed = False
        self.lingering = False  # closed with an error GOAWAY: input is dropped until the close
        self.deadline: float | None = factory.deadlines.now + factory.timeouts.keep_alive_timeout_s
        self.stalled_since: float | None = None  # response bytes wait on the client's windows
        self.flush_call: Any = None  # the write scheduled for the end of this reactor turn
        factory.deadlines.watched.add(self)

    # -- start ------------------------------------------------------------------

    def start(self, data: bytes) -> None:
        """The client sent the preface (prior knowledge, or ALPN h2): ``data`` starts it."""
        self.session = h2.H2Session(self.factory.limits, self.h2_limits)
        self.flush()
        self.dataReceived(data)
        if self.factory.draining:
            self.drain()  # accepted during a stop's grace: what it sent first is served

    def start_upgraded(self, head: RequestHead) -> None:
        """``head`` asked for h2c: 101, our preface, then its response on stream 1."""
        try:
            self.session = h2.H2Session(
                self.factory.limits,
                self.h2_limits,
                upgrade_settings=head.header(b"http2-settings") or b"",
            )
        except ProtocolError as error:
            log.info("%s: 400 %s", self.peer_text, error)
            self.http_channel.send_error(400, f"Bad Request: {error}")
            return
        self.http_channel.send(SWITCHING)
        self.flush()
        fields = [(k, v) for k, v in head.headers if k.lower() not in _UPGRADE_FIELDS]
        stream_head = dataclasses.replace(head, http_version="2", headers=fields)
        self.begin(1, stream_head)
        if self.factory.draining:
            self.drain()

    # -- incoming -----------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - forwarded Protocol method
        session = self.session
        if session is None or self.closed:
            return
        events = session.receive_data(data, self.factory.deadlines.now)
        streams = self.streams
        for sid, event in events:
            kind = type(event)
            if kind is RequestHead:
                self.begin(sid, event)  # type: ignore[arg-type]
            elif kind is Data:
                exchange = streams.get(sid)
                if exchange is not None:
                    exchange.body_data(event.data)  # type: ignore[union-attr]
            elif kind is EndOfMessage:
                exchange = streams.get(sid)
                if exchange is not None and not exchange.dispatched:
                    exchange.deadline = None  # the body is in: --request-timeout from now
                    exchange.body_end()
            elif kind is h2.StreamReset:
                if event.reason is not None:  # type: ignore[union-attr]
                    log.info("%s: stream %d: %s", self.peer_text, sid, event.reason)  # type: ignore[union-attr]
                self.stream_reset(sid)
            elif kind is h2.ConnectionEnded:
                self.ended(event)  # type: ignore[arg-type]
                return
            else:
                self.refuse(sid, event)  # type: ignore[arg-type]
        self.pump()

    def begin(self, sid: int, head: RequestHead) -> None:
        factory = self.factory
        if self.stalled_since is None:
            self.deadline = None  # busy: no idle deadline while a stream is open
        bodies = factory.bodies
        if not head.has_body:
            exchange = H2Exchange(self, sid, head, bodies.EMPTY_BODY, None, body_complete=True)
            self.streams[sid] = exchange
            self.start_app(exchange)
        else:
            body = bodies.BufferedBody(factory.limits.spool_threshold_bytes)
            exchange = H2Exchange(self, sid, head, body, None)
            self.streams[sid] = exchange
            exchange.deadline = factory.deadlines.now + factory.timeouts.body_timeout_s
            factory.deadlines.watched.add(exchange)

    def refuse(self, sid: int, error: ProtocolError) -> None:
        """A request refused before the app (431, 413, 414, 501): the status, then the end."""
        log.info("%s: stream %d: %d %s", self.peer_text, sid, error.status, error)
        exchange = self.streams.get(sid)
        if exchange is not None and exchange.dispatched:
            return  # the app has it already (a late error): its response stands
        if exchange is not None:
            exchange.body_failed(error)
            exchange.mark_done()
            self.forget(exchange)
        session = self.session
        assert session is not None
        body = (str(error) + "\n").encode("utf-8")
        code, fields, _ = response_head(
            f"{error.status} {HTTPStatus(error.status).phrase}",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
            self.date,
        )
        session.send_head(sid, code, fields, end_stream=False)
        session.send_body(sid, body, end_stream=True)
        self.idle_check()

    def stream_reset(self, sid: int) -> None:
        """The client reset the stream: cancel its request as a disconnect does."""
        exchange = self.streams.pop(sid, None)
        if exchange is not None:
            self.factory.deadlines.watched.discard(exchange)
            exchange.connection_lost()
        self.idle_check()

    def ended(self, event: h2.ConnectionEnded) -> None:
        if event.by_peer:
            # The client will open nothing more; streams it started may still finish.
            log.debug("%s: %s", self.peer_text, event.reason)
            self.flush()
            self.idle_check(closing=True)
            return
        log.info("%s: HTTP/2 connection closed with GOAWAY: %s", self.peer_text, event.reason)
        self.flush()
        self.cancel_streams()
        # Lingering close (as nginx's lingering_close): closing now, with the abuser's
        # frames unread, would make the kernel send RST, and a client whose GOAWAY is
        # still in flight may lose it. What it sends meanwhile is read and dropped.
        self.lingering = True
        self.deadline = self.factory.deadlines.now + LINGER_S

    # -- outgoing -----------------------------------------------------------------

    def pump(self) -> None:
        """Frame what the windows allow, write it, and wake streams that have room again."""
        session = self.session
        if session is None or self.closed:
            return
        if not self.transport_paused:
            sent = session.sent_bytes
            session.pump()
            if session.pending:
                if self.stalled_since is None or session.sent_bytes != sent:
                    # Waiting on the client's windows, since now: a slow client that opens
                    # them bit by bit is not a stalled one.
                    self.stalled_since = self.factory.deadlines.now
                    self.watch_send()
            else:
                self.stalled_since = None
                if not self.streams:
                    self.idle_check()  # the last response is out: a stopping server closes
        self.flush()
        if not self.transport_paused:
            for exchange in list(self.streams.values()):
                if (exchange.on_writable is not None or exchange.producer is not None) and (
                    session.buffered(exchange.sid) < h2.STREAM_BUFFER_BYTES
                ):
                    exchange.resume()

    def flush(self) -> None:
        """Write what the session framed, once per reactor turn.

        Responses finished in the same turn (the Outbox runs every app thread's calls in one
        go) leave in one write: one TLS record and one send() for many streams, instead of
        one per response.
        """
        if self.flush_call is None and not self.closed:
            self.flush_call = self.factory.deadlines.clock.callLater(0, self.flush_now)

    def flush_now(self) -> None:
        call, self.flush_call = self.flush_call, None
        if call is not None and call.active():
            call.cancel()
        session = self.session
        if session is not None and not self.closed:
            data = session.data_to_send()
            if data:
                self.http_channel.send(data)  # at once on plain TCP: see HTTPChannel.send

    def watch_send(self) -> None:
        """Response bytes wait on the client's windows: --send-timeout bounds the wait."""
        timeouts = self.factory.timeouts
        self.deadline = self.factory.deadlines.now + timeouts.send_timeout_s

    def pause_sending(self) -> None:
        """The transport is full (the client is not reading): streams stop producing."""
        self.transport_paused = True
        for exchange in self.streams.values():
            exchange.pause()

    def resume_sending(self) -> None:
        self.transport_paused = False
        self.pump()

    # -- the Connection interface, for the streams' exchanges --------------------------

    @property
    def date(self) -> bytes:
        return self.factory.date  # type: ignore[no-any-return]

    @property
    def draining(self) -> bool:
        return False  # HTTP/2 says it with GOAWAY, never with a response header

    @property
    def sending_paused(self) -> bool:
        return self.transport_paused

    def new_record(self, method: str, target: str, started: float) -> Any:
        return self.factory.records(method, target, started)

    def send(self, data: bytes) -> None:
        raise AssertionError("an HTTP/2 stream frames its own response")

    def start_app(self, exchange: Exchange) -> None:
        assert isinstance(exchange, H2Exchange)
        exchange.dispatching()
        timeout = self.factory.timeouts.request_timeout_s
        if timeout is not None:
            exchange.deadline = self.factory.deadlines.now + timeout
            self.factory.deadlines.watched.add(exchange)
        self.factory.dispatch(exchange)

    def response_handed_over(self) -> None:
        """Per stream instead: H2Exchange.send_file clears its own deadline."""

    def exchange_done(self, exchange: Exchange, keep_alive: bool) -> None:
        assert isinstance(exchange, H2Exchange)
        if self.streams.get(exchange.sid) is exchange:
            self.forget(exchange)
        session = self.session
        if session is not None and (session.pending or self.stalled_since is not None):
            self.pump()
        else:
            self.flush()  # all framed already (send_whole): nothing to pump, nobody to wake
        self.idle_check()

    def abort_exchange(self, exchange: Exchange) -> None:
        """The response cannot be completed: only its stream ends (RST_STREAM)."""
        assert isinstance(exchange, H2Exchange)
        if self.streams.get(exchange.sid) is exchange:
            self.forget(exchange)
        if self.session is not None:
            self.session.reset(exchange.sid, ErrorCodes.INTERNAL_ERROR)
        self.flush()
        self.idle_check()

    def exchange_finished(self, exchange: Exchange) -> None:
        hook = self.factory.on_finished
        if hook is not None:
            hook(exchange)

    def forget(self, exchange: H2Exchange) -> None:
        self.streams.pop(exchange.sid, None)
        exchange.deadline = None
        self.factory.deadlines.watched.discard(exchange)

    # -- endings, deadlines, the server's stop --------------------------------------

    def busy(self) -> bool:
        """A stream is open, or a response still waits for the client's window: a graceful
        stop waits for it."""
        if self.lingering:
            return False
        return bool(self.streams) or (self.session is not None and bool(self.session.pending))

    def idle_check(self, closing: bool = False) -> None:
        """No stream left: close if the server stops (or the client said GOAWAY), else
        give the connection --keep-alive to carry another request."""
        if self.streams or self.closed or self.lingering:
            return
        session = self.session
        if closing or (session is not None and (session.draining or session.ended)):
            if session is None or not session.pending:
                self.http_channel.close()
            return
        if self.stalled_since is None:
            self.deadline = self.factory.deadlines.now + self.factory.timeouts.keep_alive_timeout_s

    def drain(self) -> None:
        """The server stops: GOAWAY (NO_ERROR); open streams finish, then the connection ends."""
        if self.session is not None:
            self.session.drain()
            self.flush()
        self.idle_check(closing=True)

    def deadline_passed(self) -> None:
        if self.lingering:
            self.http_channel.close()
            return
        if self.stalled_since is not None and self.session is not None and self.session.pending:
            log.info(
                "%s: HTTP/2 client opened no window for %.0f s; dropped",
                self.peer_text,
                self.factory.timeouts.send_timeout_s,
            )
            self.http_channel.transport.abortConnection()
            return
        if not self.streams:
            self.goodbye()
            self.http_channel.close()

    def goodbye(self) -> None:
        """GOAWAY before an orderly close, so the client knows no stream was lost."""
        if self.session is not None and not self.closed:
            self.session.drain()
            self.flush_now()  # before the close that follows

    def connection_lost(self) -> None:
        """Every stream still open is cancelled as an HTTP/1.1 disconnect cancels its request."""
        self.closed = True
        self.flush_now()  # drops the scheduled write: nothing can be sent any more
        self.factory.deadlines.watched.discard(self)
        self.cancel_streams()

    def cancel_streams(self) -> None:
        streams, self.streams = self.streams, {}
        for exchange in streams.values():
            self.factory.deadlines.watched.discard(exchange)
            exchange.connection_lost()
