"""PROXY headers and proxy headers through the real HTTP/1.1 stack, in memory.

Reactor tier: proxied.py's wrapper around the real HTTPFactory, dispatcher and WSGI
container (the app runs inline), driven with StringTransport and MemoryReactorClock, as
server.py wires them. What is checked is what the app's environ and the access log say.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from treadle.accesslog import AccessLog
from treadle.config import Config
from treadle.deadlines import Deadlines
from treadle.dispatch import Dispatcher
from treadle.http import forwarded
from treadle.http.protocol import HTTPFactory
from treadle.proxied import ProxiedFactory
from treadle.proxy_header import format_v1, format_v2
from treadle.timing import RequestRecord
from treadle.wsgi import body as bodies
from treadle.wsgi.container import WSGIContainer

PROXY = IPv4Address("TCP", "127.0.0.1", 40000)
REQUEST = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"


def who(environ, start_response):
    keys = ("REMOTE_ADDR", "REMOTE_PORT", "wsgi.url_scheme", "SERVER_PORT", "HTTP_X_FORWARDED_FOR")
    body = json.dumps({key: environ.get(key) for key in keys}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


class Stack:
    """server.py's wiring for one listener, minus the sockets and threads."""

    def __init__(self, proxy_protocol: bool = False, **settings: Any) -> None:
        self.clock = MemoryReactorClock()
        config = Config.from_settings(settings)
        self.deadlines = Deadlines(self.clock)
        self.deadlines.start()
        container = WSGIContainer(who, call_from_thread=lambda f, *args: f(*args))

        def submit(exchange: Any) -> bool:
            container.job(exchange).run()
            return True

        dispatch: Any = Dispatcher(submit=submit)
        proxy_headers = forwarded.from_settings(
            config.proxy.forwarded_allow_ips, config.proxy.forwarded_headers
        )
        if proxy_headers is not None:
            dispatch = proxy_headers.wrap(dispatch)
        self.factory: Any = HTTPFactory(
            config,
            deadlines=self.deadlines,
            dispatch=dispatch,
            bodies=bodies,
            records=RequestRecord,
            on_finished=AccessLog(),
        )
        if proxy_protocol:
            self.factory = ProxiedFactory(
                self.factory, clock=self.clock, timeout_s=config.timeouts.header_timeout_s
            )

    def connect(self, peer: Any = PROXY) -> tuple[Any, StringTransport]:
        transport = StringTransport(peerAddress=peer)
        protocol = self.factory.buildProtocol(peer)
        protocol.makeConnection(transport)
        return protocol, transport


def answer(transport: StringTransport) -> dict[str, Any]:
    data = transport.value()
    assert data.startswith(b"HTTP/1.1 200 "), data
    return json.loads(data.split(b"\r\n\r\n", 1)[1])


# -- PROXY protocol ------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
def test_the_headers_source_is_remote_addr(version: int, caplog) -> None:
    caplog.set_level(logging.INFO, "treadle.access")
    stack = Stack(proxy_protocol=True)
    protocol, transport = stack.connect()
    make = format_v1 if version == 1 else format_v2
    protocol.dataReceived(make(("192.0.2.7", 51000), ("198.51.100.1", 443)) + REQUEST)
    environ = answer(transport)
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("192.0.2.7", "51000")
    assert environ["wsgi.url_scheme"] == "http"  # the header's TLS details are not trusted
    assert caplog.records[-1].getMessage().startswith("192.0.2.7 - - [")


def test_the_header_may_arrive_one_byte_at_a_time() -> None:
    stack = Stack(proxy_protocol=True)
    protocol, transport = stack.connect()
    for byte in format_v2(("2001:db8::7", 1), ("2001:db8::1", 443)) + REQUEST:
        protocol.dataReceived(bytes([byte]))
    assert answer(transport)["REMOTE_ADDR"] == "2001:db8::7"


def test_a_local_header_keeps_the_proxys_address() -> None:
    stack = Stack(proxy_protocol=True)
    protocol, transport = stack.connect()
    protocol.dataReceived(format_v2(None, None) + REQUEST)
    assert answer(transport)["REMOTE_ADDR"] == "127.0.0.1"


@pytest.mark.parametrize(
    "data",
    [REQUEST, b"PROXY TCP4 1.2.3.4 5.6.7.8 abc 80\r\n" + REQUEST, b"\x16\x03\x01\x02\x00"],
    ids=["plain-request", "bad-port", "tls-hello"],
)
def test_a_connection_without_a_valid_header_is_closed_with_one_line(data, caplog) -> None:
    caplog.set_level(logging.INFO, "treadle")
    stack = Stack(proxy_protocol=True)
    protocol, transport = stack.connect()
    protocol.dataReceived(data)
    assert transport.value() == b""  # not a byte of HTTP: the app never ran
    assert transport.disconnecting
    lines = [r.getMessage() for r in caplog.records if r.name == "treadle"]
    assert len(lines) == 1
    assert lines[0].startswith("127.0.0.1:40000: connection closed: ")
    assert "--proxy-protocol" in lines[0]
    protocol.connectionLost(None)
    assert stack.factory.wrappedFactory.connections == set()


def test_a_header_that_never_comes_times_out(caplog) -> None:
    caplog.set_level(logging.INFO, "treadle")
    stack = Stack(proxy_protocol=True, header_timeout_s=5.0)
    protocol, transport = stack.connect()
    protocol.dataReceived(b"PROXY TCP4 1.2")
    stack.clock.advance(4.9)
    assert not transport.disconnecting
    stack.clock.advance(0.2)
    assert transport.disconnecting
    assert "no complete PROXY header within 5 s" in caplog.records[-1].getMessage()


def test_the_timer_stops_once_the_header_is_in() -> None:
    stack = Stack(proxy_protocol=True)
    protocol, transport = stack.connect()
    waiting = [call for call in stack.clock.getDelayedCalls() if call.active()]
    protocol.dataReceived(format_v1(("192.0.2.7", 1), ("192.0.2.8", 2)))
    left = [call for call in stack.clock.getDelayedCalls() if call.active()]
    assert len(left) == len(waiting) - 1
    protocol.dataReceived(REQUEST)
    assert answer(transport)["REMOTE_ADDR"] == "192.0.2.7"


def test_forwarded_headers_are_checked_against_the_headers_address() -> None:
    """After a PROXY header the connection is the client's for every purpose: a client
    behind a TCP-mode proxy cannot set REMOTE_ADDR with X-Forwarded-For."""
    stack = Stack(proxy_protocol=True)
    protocol, transport = stack.connect()
    spoof = REQUEST.replace(b"\r\n\r\n", b"\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n")
    protocol.dataReceived(format_v1(("192.0.2.7", 1), ("192.0.2.8", 2)) + spoof)
    environ = answer(transport)
    assert environ["REMOTE_ADDR"] == "192.0.2.7"
    assert environ["HTTP_X_FORWARDED_FOR"] == "6.6.6.6"  # passed to the app untouched


# -- proxy headers ---------------------------------------------------------------------


def with_headers(*lines: bytes) -> bytes:
    return (
        b"GET / HTTP/1.1\r\nHost: example.com\r\n"
        + b"".join(line + b"\r\n" for line in lines)
        + b"\r\n"
    )


def test_x_forwarded_from_a_trusted_peer(caplog) -> None:
    caplog.set_level(logging.INFO, "treadle.access")
    stack = Stack()
    protocol, transport = stack.connect()
    protocol.dataReceived(
        with_headers(b"X-Forwarded-For: 203.0.113.9", b"X-Forwarded-Proto: https")
    )
    environ = answer(transport)
    assert environ["REMOTE_ADDR"] == "203.0.113.9"
    assert environ["REMOTE_PORT"] == ""  # not told: not the proxy's port either
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["SERVER_PORT"] == "443"  # the default port of the scheme the client used
    assert environ["HTTP_X_FORWARDED_FOR"] == "203.0.113.9"
    assert caplog.records[-1].getMessage().startswith("203.0.113.9 - - [")


def test_x_forwarded_from_anyone_else_is_only_passed_on(caplog) -> None:
    caplog.set_level(logging.INFO, "treadle.access")
    stack = Stack()
    protocol, transport = stack.connect(IPv4Address("TCP", "198.51.100.2", 5555))
    protocol.dataReceived(
        with_headers(b"X-Forwarded-For: 203.0.113.9", b"X-Forwarded-Proto: https")
    )
    environ = answer(transport)
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("198.51.100.2", "5555")
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["HTTP_X_FORWARDED_FOR"] == "203.0.113.9"
    assert caplog.records[-1].getMessage().startswith("198.51.100.2 - - [")


def test_an_empty_setting_believes_nobody() -> None:
    stack = Stack(forwarded_allow_ips="")
    protocol, transport = stack.connect()
    protocol.dataReceived(with_headers(b"X-Forwarded-For: 203.0.113.9"))
    assert answer(transport)["REMOTE_ADDR"] == "127.0.0.1"


def test_rfc7239_forwarded_with_a_port() -> None:
    stack = Stack(forwarded_headers="forwarded")
    protocol, transport = stack.connect()
    protocol.dataReceived(with_headers(b'Forwarded: for="[2001:db8::7]:4711";proto=https'))
    environ = answer(transport)
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("2001:db8::7", "4711")
    assert environ["wsgi.url_scheme"] == "https"


def test_each_request_on_a_connection_is_resolved_on_its_own() -> None:
    stack = Stack()
    protocol, transport = stack.connect()
    protocol.dataReceived(with_headers(b"X-Forwarded-For: 203.0.113.9"))
    assert answer(transport)["REMOTE_ADDR"] == "203.0.113.9"
    transport.clear()
    protocol.dataReceived(with_headers())
    assert answer(transport)["REMOTE_ADDR"] == "127.0.0.1"
