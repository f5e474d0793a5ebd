"""HTTP/2 on the reactor (http/h2_protocol.py) driven in memory: StringTransport, a
MemoryReactorClock, the h2 library as the client, the WSGI container run inline.

Reactor tier: no sockets, no threads; time is advanced, never slept.
"""

from __future__ import annotations

import json
from typing import Any

import h2.config
import h2.connection
import h2.events
from h2.errors import ErrorCodes
from twisted.internet.testing import MemoryReactorClock, StringTransport

from treadle.config import Config
from treadle.deadlines import Deadlines
from treadle.dispatch import Dispatcher
from treadle.http.h2 import H2Limits
from treadle.http.h2_protocol import H2Support
from treadle.http.protocol import HTTPFactory
from treadle.timing import RequestRecord
from treadle.wsgi import body as bodies
from treadle.wsgi.container import WSGIContainer


def environ_app(environ, start_response):  # noqa: ANN001, ANN201
    start_response("200 OK", [("Content-Type", "application/json")])
    keys = ("SERVER_PROTOCOL", "PATH_INFO", "REQUEST_METHOD", "CONTENT_LENGTH")
    info = {key: environ.get(key) for key in keys}
    info["body"] = environ["wsgi.input"].read().decode()
    return [json.dumps(info).encode()]


class Harness:
    def __init__(self, app: Any = environ_app, run_inline: bool = True, **settings: Any) -> None:
        self.clock = MemoryReactorClock()
        config = Config.from_settings({"h2c": True, **settings})
        self.deadlines = Deadlines(self.clock)
        self.deadlines.start()
        self.container = WSGIContainer(app, call_from_thread=lambda f, *args: f(*args))
        self.run_inline = run_inline
        self.held: list[Any] = []
        self.factory = HTTPFactory(
            config,
            deadlines=self.deadlines,
            dispatch=Dispatcher(submit=self.submit),
            bodies=bodies,
            records=RequestRecord,
            h2=H2Support(H2Limits(), h2c=True),
        )
        self.transport = StringTransport()
        self.protocol = self.factory.buildProtocol(None)
        self.protocol.makeConnection(self.transport)
        self.client = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.client.initiate_connection()
        self.events: list[Any] = []
        self.pump()

    def submit(self, exchange: Any) -> bool:
        job = self.container.job(exchange)
        if self.run_inline:
            job.run()
        else:
            self.held.append(job)
        return True

    def pump(self) -> list[Any]:
        """Client bytes to the server, server bytes to the client; the new client events."""
        data = self.client.data_to_send()
        if data:
            self.protocol.dataReceived(data)
        self.clock.advance(0)  # the channel writes once per reactor turn
        out = self.transport.value()
        self.transport.clear()
        events = self.client.receive_data(out) if out else []
        self.events += events
        return events

    def request(self, path: str, method: bytes = b"GET", body: bytes = b"") -> int:
        sid = self.client.get_next_available_stream_id()
        headers = [(b":method", method), (b":path", path.encode()), (b":scheme", b"http"),
                   (b":authority", b"h")]  # fmt: skip
        self.client.send_headers(sid, headers, end_stream=not body)
        if body:
            self.client.send_data(sid, body, end_stream=True)
        self.pump()
        return sid

    def response(self, sid: int) -> tuple[int, bytes]:
        status = next(
            int(dict(e.headers)[b":status"])
            for e in self.events
            if isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid
        )
        body = b"".join(
            e.data
            for e in self.events
            if isinstance(e, h2.events.DataReceived) and e.stream_id == sid
        )
        return status, body

    def advance(self, seconds: int) -> None:
        for _ in range(seconds):
            self.clock.advance(1.0)
        self.pump()


def test_streams_are_answered_with_their_own_environ() -> None:
    harness = Harness()
    one = harness.request("/one")
    two = harness.request("/two", b"POST", b"a=1")
    status, body = harness.response(one)
    assert status == 200
    assert json.loads(body) == {
        "SERVER_PROTOCOL": "HTTP/2", "PATH_INFO": "/one", "REQUEST_METHOD": "GET",
        "CONTENT_LENGTH": None, "body": "",
    }  # fmt: skip
    assert json.loads(harness.response(two)[1])["body"] == "a=1"
    assert harness.protocol.state == "h2"


def test_a_reset_stream_cancels_its_queued_request() -> None:
    harness = Harness(run_inline=False)
    sid = harness.request("/held")
    (job,) = harness.held
    assert not job.record.cancel.is_set()
    harness.client.reset_stream(sid)
    harness.pump()
    assert job.record.cancel.is_set()
    assert job.record.cancel.reason == "client went away"
    assert not harness.factory.connections or not harness.transport.disconnecting


def test_request_timeout_is_per_stream() -> None:
    harness = Harness(run_inline=False, request_timeout_s=2.0)
    slow = harness.request("/slow")
    harness.advance(4)
    assert harness.response(slow)[0] == 504
    assert harness.held[0].record.cancel.is_set()
    assert not harness.transport.disconnecting  # only the stream ended


def test_an_idle_connection_gets_goaway_after_keep_alive() -> None:
    harness = Harness(keep_alive_timeout_s=3.0)
    harness.response(harness.request("/"))
    harness.advance(5)
    goaway = [e for e in harness.events if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway and goaway[0].error_code == ErrorCodes.NO_ERROR
    assert harness.transport.disconnecting


def test_a_paused_transport_pauses_the_streams() -> None:
    harness = Harness(run_inline=False)
    sid = harness.request("/x")
    (job,) = harness.held
    exchange = job.exchange
    harness.protocol.pauseProducing()
    assert exchange.paused
    harness.protocol.resumeProducing()
    assert not exchange.paused
    job.run()
    harness.pump()
    assert harness.response(sid)[0] == 200


def big(environ, start_response):  # noqa: ANN001, ANN201
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [b"b" * 300_000]


def test_a_client_that_never_opens_its_window_is_dropped_after_send_timeout() -> None:
    harness = Harness(big, send_timeout_s=10.0, keep_alive_timeout_s=60.0)
    sid = harness.request("/")  # the client's window: 65,535 bytes, never reopened
    assert len(harness.response(sid)[1]) == 65_535
    harness.advance(8)
    assert not harness.transport.disconnected
    harness.advance(4)
    assert harness.transport.disconnected  # aborted: nothing more would be taken


def test_a_client_that_opens_its_window_slowly_is_not_dropped() -> None:
    harness = Harness(big, send_timeout_s=10.0, keep_alive_timeout_s=60.0)
    sid = harness.request("/")
    for _ in range(6):  # 8 KiB every 3 s: slow, but never stalled for 10 s
        harness.advance(3)
        harness.client.increment_flow_control_window(8192)
        harness.client.increment_flow_control_window(8192, sid)
        harness.pump()
        assert not harness.transport.disconnected
    assert len(harness.response(sid)[1]) == 65_535 + 6 * 8192


def test_a_connection_that_turns_http2_during_a_stop_is_served_then_told_goaway() -> None:
    # Accepted before the stop, its first bytes come during the drain's grace: the request
    # they carry is answered, then GOAWAY, then the close.
    harness = Harness()
    fresh = harness.factory.buildProtocol(None)
    transport = StringTransport()
    fresh.makeConnection(transport)
    harness.factory.drain()
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    client.initiate_connection()
    client.send_headers(1, [(b":method", b"GET"), (b":path", b"/late"), (b":scheme", b"http"),
                            (b":authority", b"h")], end_stream=True)  # fmt: skip
    fresh.dataReceived(client.data_to_send())
    harness.clock.advance(0)
    events = client.receive_data(transport.value())
    assert any(isinstance(e, h2.events.ResponseReceived) for e in events)
    goaway = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway and goaway[0].error_code == ErrorCodes.NO_ERROR
    assert transport.disconnecting
