"""ZeroMQ on the reactor: Mongrel2's PUSH socket read, responses published back.

Reactor layer: pyzmq sockets, never blocking and never in a thread. The PULL socket's
ZMQ_FD is registered as a reader. That descriptor is edge-triggered in effect: it
signals that ZeroMQ has work, not that a message waits, so each wake-up (and each
continuation) reads until recv finds nothing (which re-arms it as ZMQ_EVENTS would), at
most ``batch`` messages per reactor turn so other clients are not starved; more left
waiting are read on the next turn. Responses go out on an XPUB socket with no high-water
mark: a publisher drops messages past it, and drops everything until the subscriber's
subscription arrives, so the PULL socket is connected only once Mongrel2 has subscribed
(XPUB hands us that subscription). Messages are handed to ``on_message``
(channel.Handler.receive); this module knows nothing of HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import zmq
from twisted.internet.interfaces import IReadDescriptor
from zope.interface import implementer

from treadle.mongrel2.zmq_context import io_context

log = logging.getLogger("treadle")

BATCH = 256  # messages read per reactor turn before others get a go
# Stopping behind a broker: how long after our BYE its answer is waited for (the broker
# drops a handler silent for three 1 s heartbeats; a broker silent that long is gone).
# Requests still running are waited for in any case (--graceful-timeout).
RELEASE_WAIT_S = 3.0
LINGER_MS = 2000  # at close: time for responses already sent to reach Mongrel2


@implementer(IReadDescriptor)
class Mongrel2Sockets:
    """The two sockets of one handler. Reactor thread only."""

    def __init__(
        self,
        reactor: Any,
        *,
        send_spec: str,
        recv_spec: str,
        on_message: Callable[[bytes], None],
        send_ident: str | None = None,
        context: zmq.Context[Any] | None = None,
        batch: int = BATCH,
        broker_spec: str | None = None,
        credits: int = 0,
        call_soon: Callable[[Callable[[], None]], Any] | None = None,
    ) -> None:
        self.reactor = reactor
        # Named from Mongrel2's side, as its config is: it sends on send_spec (we pull)
        # and receives on recv_spec (we publish).
        self.send_spec = send_spec
        self.recv_spec = recv_spec
        self.on_message = on_message
        self.send_ident = send_ident
        self.context = context or io_context()
        self.batch = batch
        # Runs a call later in this reactor turn, before the reactor blocks again.
        self.call_soon = call_soon or (lambda f: reactor.callLater(0, f))
        # With a broker (mongrel2/broker.py), requests come from it on a DEALER socket, one
        # per free thread this handler has announced (``credits`` at first).
        self.broker_spec = broker_spec
        self.credits = credits
        self.pull: zmq.Socket[Any] | None = None
        self.pub: zmq.Socket[Any] | None = None
        self.fd = -1
        self.reading = False
        self.more_scheduled = False
        self.subscriptions: _Subscriptions | None = None
        self.on_connected: Callable[[], None] | None = None
        # Stopping behind a broker: BYE sent; the broker's BYE back says nothing follows.
        self.leaving = False
        self.released = False
        self.on_released: Callable[[], None] | None = None

    def start(self) -> None:
        """Connect the response socket; requests are read once Mongrel2 has subscribed.

        A bad spec raises zmq.ZMQError here.
        """
        pub = self.context.socket(zmq.XPUB)
        pub.setsockopt(zmq.SNDHWM, 0)
        pub.setsockopt(zmq.LINGER, LINGER_MS)
        if self.send_ident:
            pub.setsockopt(zmq.IDENTITY, self.send_ident.encode())
        pull = self.context.socket(zmq.DEALER if self.broker_spec else zmq.PULL)
        pull.setsockopt(zmq.LINGER, 0)
        try:
            pub.connect(self.recv_spec)
        except zmq.ZMQError:
            pub.close(0)
            pull.close(0)
            raise
        # The PULL socket connects once subscribed, not before: even a connection made
        # and dropped at once (to check the spec) can be handed a request by Mongrel2's
        # round-robin and lose it. command.py checks the spec's form instead.
        self.pub, self.pull = pub, pull
        self.subscriptions = _Subscriptions(self)
        self.reactor.addReader(self.subscriptions)
        self.subscriptions.doRead()

    def subscribed(self) -> None:
        """Mongrel2's SUB socket has subscribed: responses reach it from now on."""
        if self.reading or self.pull is None:
            return
        source = self.broker_spec or self.send_spec
        try:
            self.pull.connect(source)
        except zmq.ZMQError as error:
            log.error("mongrel2: cannot connect to %s: %s", source, error)
            return
        if self.broker_spec:
            self.to_broker(b"READY", b"%d" % self.credits)
        self.fd = int(self.pull.getsockopt(zmq.FD))
        self.reading = True
        self.reactor.addReader(self)
        if self.on_connected is not None:
            self.on_connected()
        self.read()  # messages may be queued already: the descriptor would not say so

    def send(self, messages: list[bytes]) -> None:
        pub = self.pub
        if pub is None:
            return
        for message in messages:
            pub.send(message, zmq.NOBLOCK)

    def read(self) -> None:
        self.more_scheduled = False
        pull = self.pull
        if pull is None or not self.reading:
            return
        on_message = self.on_message
        for _ in range(self.batch):
            # recv until EAGAIN: a recv that finds nothing has processed the socket's
            # commands, as reading ZMQ_EVENTS would, so the descriptor signals the next
            # message. (ZMQ_EVENTS before every recv cost more than the recv itself.)
            try:
                if self.broker_spec:
                    frames = pull.recv_multipart(zmq.NOBLOCK)
                    if frames[0] == b"BYE" and self.leaving:
                        self._release()
                        continue
                    if frames[0] != b"REQUEST" or len(frames) != 2:
                        continue  # the broker's heartbeat
                    data = frames[1]
                else:
                    data = pull.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                on_message(data)
            except Exception:
                log.exception("mongrel2: error handling a message")
        self.schedule_more()

    def to_broker(self, *frames: bytes) -> None:
        """READY n (n more free threads), DONE sender conn n (n requests ended, n threads
        free again), HEARTBEAT free (alive; lets a restarted broker learn of us)."""
        if self.broker_spec and self.reading and self.pull is not None:
            if self.leaving and frames[0] != b"DONE":
                return  # no READY or HEARTBEAT after BYE: the broker would give us more
            self.pull.send_multipart(frames, zmq.NOBLOCK)
            # A send on the socket we read from may take the descriptor's edge: look again.
            if not self.more_scheduled:
                self.schedule_more()

    def _release(self) -> None:
        """The broker will send nothing more (its BYE came, or it is gone): we may close."""
        self.released = True
        if self.on_released is not None:
            self.on_released()

    def _release_timed_out(self) -> None:
        if self.released or self.pull is None:
            return
        log.warning("mongrel2: no BYE back from the broker in %.0f s; closing", RELEASE_WAIT_S)
        self._release()

    @property
    def awaiting_release(self) -> bool:
        """Stopping behind a broker whose BYE back has not come: requests may be on the way."""
        return self.leaving and not self.released and self.pull is not None

    def schedule_more(self) -> None:
        self.more_scheduled = True
        self.call_soon(self.read)

    def stop_receiving(self) -> None:
        """No new requests: disconnect from Mongrel2's PUSH socket (it gives them to the
        other handlers), and read what it had already queued for us."""
        pull = self.pull
        if pull is None or not self.reading:
            return
        source = self.broker_spec or self.send_spec
        if self.broker_spec:
            # The broker sends nothing new; what it already sent is read as usual, and its
            # BYE back (once every request it gave us has ended) says nothing follows.
            self.to_broker(b"BYE")
            self.leaving = True
            self.reactor.callLater(RELEASE_WAIT_S, self._release_timed_out)
            self.read()
            return
        try:
            pull.disconnect(source)
        except zmq.ZMQError as error:
            log.debug("mongrel2: disconnect from %s: %s", source, error)
        self.read()

    def close(self) -> None:
        """Stop reading and close; what was published still leaves within the linger."""
        if self.subscriptions is not None:
            self.reactor.removeReader(self.subscriptions)
            self.subscriptions = None
        if self.reading:
            self.reading = False
            self.reactor.removeReader(self)
        if self.pull is not None:
            self.pull.close(0)
            self.pull = None
        if self.pub is not None:
            self.pub.close(LINGER_MS)
            self.pub = None

    # IReadDescriptor
    def fileno(self) -> int:
        return self.fd

    def doRead(self) -> None:
        self.read()

    def connectionLost(self, reason: Any) -> None:
        self.reading = False

    def logPrefix(self) -> str:
        return "mongrel2"


@implementer(IReadDescriptor)
class _Subscriptions:
    """The XPUB socket's descriptor: (un)subscriptions from Mongrel2, read as they come."""

    def __init__(self, sockets: Mongrel2Sockets) -> None:
        self.sockets = sockets
        assert sockets.pub is not None
        self.pub = sockets.pub
        self.fd = int(self.pub.getsockopt(zmq.FD))

    def doRead(self) -> None:
        pub = self.pub
        while int(pub.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            try:
                notice = pub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if notice[:1] == b"\x01":  # a subscription (b"\x00" + topic: one withdrawn)
                self.sockets.subscribed()

    def fileno(self) -> int:
        return self.fd

    def connectionLost(self, reason: Any) -> None:
        """Nothing to do: the sockets close themselves."""

    def logPrefix(self) -> str:
        return "mongrel2"
