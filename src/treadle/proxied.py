"""Connections that begin with a PROXY protocol header (``--proxy-protocol``).

Reactor layer: a Twisted protocol wrapper, run in the reactor thread only. It reads the
header (proxy_header.py parses it) before the wrapped protocol hears of the connection,
so that protocol's ``transport.getPeer()`` is already the client the header names when
its ``connectionMade`` runs; TLS, when the bind has it, is wrapped inside (the proxy
relays the encrypted bytes after its header). A connection without a valid header within
--header-timeout is closed with one log line and the wrapped protocol never sees it. It
must not know about HTTP.

Twisted's own twisted.protocols.haproxy is not used: it connects the wrapped protocol
before the header arrives (treadle reads the peer in connectionMade), closes a connection
whose first read is shorter than 16 bytes, lets a bad port escape as a ValueError, takes
any text as an address, and logs nothing when it refuses.
"""

from __future__ import annotations

import logging
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import Protocol, connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import directlyProvides, providedBy

from treadle.proxy_header import Address, Invalid, ProxyHeader, parse

log = logging.getLogger("treadle")


def _address(pair: Address) -> IPv4Address | IPv6Address:
    if ":" in pair[0]:
        return IPv6Address("TCP", pair[0], pair[1])
    return IPv4Address("TCP", pair[0], pair[1])


def _describe(address: Any) -> str:
    host = getattr(address, "host", None)
    if host is None:
        return "unix"
    return f"[{host}]:{address.port}" if ":" in host else f"{host}:{address.port}"


class ProxiedConnection(ProtocolWrapper):
    """One connection: the PROXY header first, then the wrapped protocol."""

    factory: ProxiedFactory
    transport: Any  # the TCP (or unix) transport under the header
    wrappedProtocol: Any  # noqa: N815 - Twisted's name

    def __init__(self, factory: ProxiedFactory, wrapped: Any) -> None:
        super().__init__(factory, wrapped)  # type: ignore[arg-type]
        self.buffer = b""
        self.header: ProxyHeader | None = None
        self.peer: Any = None
        self.host: Any = None
        self.refused = False
        self.timer: Any = None

    def makeConnection(self, transport: Any) -> None:  # noqa: N802 - Twisted's name
        # What ProtocolWrapper does, except connecting the wrapped protocol: that waits
        # for the header, which says who the peer is.
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)
        self.timer = self.factory.clock.callLater(self.factory.timeout_s, self._timed_out)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        if self.header is not None:
            self.wrappedProtocol.dataReceived(data)
            return
        if self.refused:
            return
        buffer = self.buffer + data if self.buffer else data
        parsed = parse(buffer)
        if parsed is None:
            self.buffer = buffer
            return
        if isinstance(parsed, Invalid):
            self._refuse(parsed.reason)
            return
        self.buffer = b""
        self._cancel_timer()
        self.header = parsed
        if parsed.source is not None and parsed.destination is not None:
            self.peer = _address(parsed.source)
            self.host = _address(parsed.destination)
        self.wrappedProtocol.makeConnection(self)
        rest = buffer[parsed.length :]
        if rest and not self.transport.disconnecting:
            self.wrappedProtocol.dataReceived(rest)

    def getPeer(self) -> Any:  # noqa: N802 - Twisted's name
        return self.peer if self.peer is not None else self.transport.getPeer()

    def getHost(self) -> Any:  # noqa: N802 - Twisted's name
        return self.host if self.host is not None else self.transport.getHost()

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802 - Twisted's name
        self._cancel_timer()
        self.factory.unregisterProtocol(self)
        if self.header is not None:
            self.wrappedProtocol.connectionLost(reason)
        self.wrappedProtocol = None

    def _refuse(self, reason: str) -> None:
        self.refused = True
        self.buffer = b""
        self._cancel_timer()
        log.info(
            "%s: connection closed: %s (--proxy-protocol)",
            _describe(self.transport.getPeer()),
            reason,
        )
        self.transport.loseConnection()

    def _timed_out(self) -> None:
        self.timer = None
        self._refuse(f"no complete PROXY header within {self.factory.timeout_s:g} s")

    def _cancel_timer(self) -> None:
        timer, self.timer = self.timer, None
        if timer is not None and timer.active():
            timer.cancel()


class ProxiedFactory(WrappingFactory):
    """Wraps the listener's factory: every connection must start with a PROXY header."""

    protocol = ProxiedConnection  # type: ignore[assignment]
    noisy = False

    def __init__(self, wrapped: Any, *, clock: Any, timeout_s: float) -> None:
        super().__init__(wrapped)
        self.clock = clock
        self.timeout_s = timeout_s
