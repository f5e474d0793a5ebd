"""The HTTP/1.1 protocol driven in memory: StringTransport, MemoryReactorClock, apps run inline.

Reactor tier: no sockets, no threads. The WSGI job runs synchronously in the test
thread and ``call_from_thread`` calls straight through, so each test sees exactly
the bytes a client would.
"""

from __future__ import annotations

import gc
import os
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from twisted.internet.testing import MemoryReactorClock, StringTransport

from treadle.config import Config
from treadle.deadlines import Deadlines
from treadle.dispatch import Dispatcher
from treadle.http.exchange import Exchange
from treadle.http.file_producer import FileProducer
from treadle.http.h1 import H1Parser
from treadle.http.protocol import HTTPChannel, HTTPFactory
from treadle.timing import RequestRecord
from treadle.wsgi import body as bodies
from treadle.wsgi.container import WSGIContainer


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def echo_path(environ, start_response):
    start_response("200 OK", [])
    return [environ["PATH_INFO"].encode()]


class Harness:
    def __init__(self, app=hello, run_inline: bool = True, **settings: Any) -> None:
        self.clock = MemoryReactorClock()
        self.config = Config.from_settings(settings)
        self.deadlines = Deadlines(self.clock)
        self.deadlines.start()
        self.container = WSGIContainer(app, call_from_thread=self.call)
        self.held: list[Any] = []
        self.calls: queue.Queue = queue.Queue()
        self.seen = b""
        self.run_inline = run_inline
        self.factory = HTTPFactory(
            self.config,
            deadlines=self.deadlines,
            dispatch=Dispatcher(submit=self.submit),
            bodies=bodies,
            records=RequestRecord,
        )
        self.transport = StringTransport()
        self.protocol = self.factory.buildProtocol(None)
        self.protocol.makeConnection(self.transport)

    def call(self, f, *args):
        # Like reactor.callFromThread: from the test's own thread run at once; from
        # another thread, queue for pump() so only the test thread touches the transport.
        if threading.current_thread() is threading.main_thread():
            f(*args)
        else:
            self.calls.put((f, args))

    def pump_until(self, predicate, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            assert left > 0, "condition not reached in time"
            try:
                f, args = self.calls.get(timeout=min(left, 0.1))
            except queue.Empty:
                continue
            f(*args)

    def submit(self, exchange) -> bool:
        job = self.container.job(exchange)
        if self.run_inline:
            job.run()
        else:
            self.held.append(job)
        return True

    def send(self, data: bytes) -> bytes:
        self.protocol.dataReceived(data)
        return self.take()

    def take(self) -> bytes:
        value = self.transport.value()
        self.seen += value
        self.transport.clear()
        return value

    def advance(self, seconds: float) -> None:
        for _ in range(int(seconds)):
            self.clock.advance(1.0)

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting


GET = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
PIPELINED_A_B = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"


def test_get_is_answered_with_length_date_and_keep_alive() -> None:
    h = Harness()
    out = h.send(GET)
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Length: 5\r\n" in out
    assert b"Date: " in out
    assert out.endswith(b"\r\n\r\nhello")
    assert not h.closed


def test_pipelined_requests_are_answered_in_order_one_at_a_time() -> None:
    h = Harness(echo_path, run_inline=False)
    h.send(PIPELINED_A_B)
    assert len(h.held) == 1, "the second request must wait for the first response"
    assert h.transport.producerState == "paused", "reading pauses while requests queue up"
    h.held.pop(0).run()
    assert len(h.held) == 1
    h.held.pop(0).run()
    out = h.take()
    assert out.index(b"\r\n\r\n/a") < out.index(b"\r\n\r\n/b")
    assert h.transport.producerState == "producing"


def test_a_pipelined_request_waits_until_the_client_takes_the_previous_response() -> None:
    h = Harness(echo_path, run_inline=False)
    h.send(PIPELINED_A_B)
    h.protocol.pauseProducing()  # the client stopped reading: the send buffer is full
    h.held.pop(0).run()
    assert b"\r\n\r\n/a" in h.take()
    assert h.held == [], "no new response may pile up while the client is not reading"
    h.protocol.resumeProducing()
    assert len(h.held) == 1
    h.held.pop(0).run()
    assert h.take().endswith(b"\r\n\r\n/b")
    assert h.transport.producerState == "producing"


def test_a_request_sent_while_the_client_is_not_reading_waits_without_a_deadline() -> None:
    h = Harness(header_timeout_s=5.0)
    h.send(GET)
    h.protocol.pauseProducing()
    assert h.send(GET) == b"", "answered while the client was not reading"
    h.advance(30)  # past the head deadline: the head was complete, so no 408
    assert not h.closed and h.take() == b""
    h.protocol.resumeProducing()
    assert h.take().startswith(b"HTTP/1.1 200 OK\r\n")
    assert not h.closed


def test_a_head_trickling_in_gets_408_at_its_deadline() -> None:
    h = Harness(header_timeout_s=5.0)
    # A byte a second never extends the head deadline.
    for byte in b"GET / HTTP/1.1\r\nHo":
        h.protocol.dataReceived(bytes([byte]))
        h.clock.advance(0.3)
        if h.closed:
            break
    h.advance(5)
    out = h.take()
    assert out.startswith(b"HTTP/1.1 408 ")
    assert b"Connection: close" in out
    assert h.closed


def test_an_idle_keep_alive_connection_is_closed_quietly() -> None:
    h = Harness(keep_alive_timeout_s=2.0)
    h.send(GET)
    h.advance(1)
    assert not h.closed
    h.advance(2)
    assert h.closed
    assert h.take() == b""


def test_a_stalled_body_gets_408() -> None:
    h = Harness(body_timeout_s=3.0)
    h.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    h.advance(4)
    out = h.take()
    assert out.startswith(b"HTTP/1.1 408 ")
    assert h.closed


def test_bad_request_gets_400_and_close() -> None:
    h = Harness()
    out = h.send(
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    assert out.startswith(b"HTTP/1.1 400 ")
    assert b"Connection: close" in out
    assert b"Traceback" not in out
    assert h.closed


EXPECT_5 = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"


def test_continue_is_sent_by_the_reactor_and_the_app_runs_once_the_body_is_in() -> None:
    def reader(environ, start_response):
        body = environ["wsgi.input"].read()
        start_response("200 OK", [])
        return [b"got " + body]

    h = Harness(reader, run_inline=False)
    assert h.send(EXPECT_5) == b"HTTP/1.1 100 Continue\r\n\r\n"
    for byte in b"hell":
        h.send(bytes([byte]))
        assert not h.held, "no thread is given to a body still arriving"
    h.send(b"o")
    h.held.pop().run()
    out = h.take()
    assert out.startswith(b"HTTP/1.1 200 OK") and out.endswith(b"got hello")
    assert b"Connection: close" not in out


def test_continue_with_the_body_sent_along_anyway_is_answered_normally() -> None:
    h = Harness(echo_path)
    out = h.send(EXPECT_5 + b"hello")
    # RFC 9110 §10.1.1 lets a server omit the 100 here; sending it is allowed too (§15.2:
    # a client must accept 1xx responses it did not wait for).
    assert out.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK")
    assert not h.closed


def test_continue_over_the_body_limit_gets_413_without_100() -> None:
    h = Harness(max_body_bytes=4)
    out = h.send(EXPECT_5)
    assert out.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in out
    assert b"Connection: close" in out and h.closed


def test_chunked_request_body_is_buffered_and_given_a_content_length() -> None:
    seen = {}

    def app(environ, start_response):
        seen["length"] = environ.get("CONTENT_LENGTH")
        seen["body"] = environ["wsgi.input"].read()
        start_response("200 OK", [])
        return [b""]

    h = Harness(app)
    h.send(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    assert seen == {"length": "5", "body": b"abcde"}


def test_client_leaving_cancels_the_running_request() -> None:
    h = Harness(run_inline=False)
    h.send(GET)
    job = h.held.pop()
    h.protocol.connectionLost(None)
    assert job.record.cancel.is_set()


def test_streamed_response_waits_while_the_transport_is_paused() -> None:
    def streamer(environ, start_response):
        start_response("200 OK", [])
        return iter([b"one", b"two"])

    h = Harness(streamer, run_inline=False)
    h.send(GET)
    job = h.held.pop()
    h.protocol.pauseProducing()
    job.run()
    out = h.take()
    assert b"one" not in out
    h.protocol.resumeProducing()
    h.take()
    out = h.seen
    assert b"Transfer-Encoding: chunked" in out
    assert out.endswith(b"6\r\nonetwo\r\n0\r\n\r\n")


def test_draining_closes_idle_connections_and_answers_busy_ones_with_close() -> None:
    busy = Harness(run_inline=False)
    idle_transport = StringTransport()
    idle = busy.factory.buildProtocol(None)
    idle.makeConnection(idle_transport)
    idle.dataReceived(GET)
    busy.held.pop().run()  # the idle connection has served a request
    fresh_transport = StringTransport()
    busy.factory.buildProtocol(None).makeConnection(fresh_transport)
    busy.send(GET)
    busy.advance(2)  # the idle connection's last response is older than a tick
    busy.factory.drain()
    assert idle_transport.disconnecting
    assert not busy.closed
    busy.held.pop().run()
    out = busy.take()
    assert b"Connection: close" in out
    assert busy.closed
    # A connection that has not sent its first request yet gets a short grace.
    assert not fresh_transport.disconnecting
    busy.advance(3)
    assert fresh_transport.disconnecting


def test_a_connection_that_just_finished_a_response_may_send_one_more_at_a_drain() -> None:
    """A busy keep-alive client racing a restart: its next request is answered, with close."""
    h = Harness()
    assert h.send(GET).startswith(b"HTTP/1.1 200")
    h.factory.drain()
    assert not h.closed
    assert not h.factory.quiet()  # a graceful stop waits for it
    out = h.send(GET)
    assert out.startswith(b"HTTP/1.1 200") and b"Connection: close" in out
    assert h.closed


def stopped_mid_body() -> Harness:
    """A harness whose app is stopped (drain, as by SIGTERM) after its head went out,
    without Connection: close, and before its body ends."""
    harness: list[Harness] = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "4")])
        yield b"ab"
        harness[0].factory.drain(every_idle=True)
        yield b"cd"

    harness.append(Harness(app))
    return harness[0]


def test_a_response_that_promised_keep_alive_before_a_drain_keeps_its_connection() -> None:
    """The head went out without Connection: close, then the stop began: a balancer may
    reuse the connection the moment the body ends. Its next request is answered, with close.
    """
    h = stopped_mid_body()
    out = h.send(GET)
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"abcd")
    assert b"Connection: close" not in out
    assert not h.closed
    assert not h.factory.quiet()  # a graceful stop waits for it
    out = h.send(GET)
    assert out.startswith(b"HTTP/1.1 200") and b"Connection: close" in out
    assert h.closed


def test_a_promised_keep_alive_at_a_drain_closes_after_the_grace() -> None:
    h = stopped_mid_body()
    h.send(GET)
    assert not h.closed
    h.advance(3)  # past the 2 s grace, well short of the 5 s keep-alive
    assert h.closed


def test_a_connection_accepted_while_draining_is_answered_with_close() -> None:
    """Taken from the accept queue as the server stops: its request was already on the way."""
    h = Harness()
    h.factory.drain(every_idle=True)
    late_transport = StringTransport()
    late = h.factory.buildProtocol(None)
    late.makeConnection(late_transport)
    assert not late_transport.disconnecting
    assert not h.factory.quiet()
    late.dataReceived(GET)
    out = late_transport.value()
    assert out.startswith(b"HTTP/1.1 200") and b"Connection: close" in out
    assert late_transport.disconnecting
    quiet_transport = StringTransport()
    h.factory.buildProtocol(None).makeConnection(quiet_transport)
    h.advance(3)  # one that sends nothing closes after the grace
    assert quiet_transport.disconnecting


def test_a_recent_connection_that_sends_nothing_closes_after_the_grace() -> None:
    h = Harness()
    h.send(GET)
    h.factory.drain()
    assert not h.closed
    h.advance(3)
    assert h.closed


def test_head_response_has_no_body() -> None:
    h = Harness()
    out = h.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.endswith(b"\r\n\r\n")
    assert b"Content-Length: 5" in out


def test_app_error_before_head_is_a_plain_500() -> None:
    def broken(environ, start_response):
        raise RuntimeError("secret detail")

    h = Harness(broken)
    out = h.send(GET)
    assert out.startswith(b"HTTP/1.1 500 ")
    assert b"secret" not in out and b"Traceback" not in out
    assert h.closed


def test_http10_without_length_is_close_delimited() -> None:
    def streamer(environ, start_response):
        start_response("200 OK", [])
        return iter([b"a", b"b"])

    h = Harness(streamer)
    out = h.send(b"GET / HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK") or out.startswith(b"HTTP/1.0 200 OK")
    assert out.endswith(b"ab")
    assert h.closed


# -- a lost connection is freed by reference counting alone ------------------------------
# The cyclic collector runs rarely under --gc-threshold: whatever a lost connection leaves
# in a reference cycle (its exchange, body, buffers) piles up until it does.


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# What one connection and its request hold (slotted classes: counted, not weakly referenced).
HELD_TYPES = (HTTPChannel, H1Parser, Exchange, RequestRecord, bodies.BufferedBody, FileProducer)


def live() -> dict[str, int]:
    counts = dict.fromkeys((kind.__name__ for kind in HELD_TYPES), 0)
    for obj in gc.get_objects():
        if type(obj) in HELD_TYPES:
            counts[type(obj).__name__] += 1
    return counts


def lose_connection(h: Harness) -> None:
    """Drop the connection as Twisted does: the transport lets go, then the protocol."""
    h.transport.unregisterProducer()
    h.protocol.connectionLost(None)
    h.protocol = h.transport = None


def test_a_connection_lost_mid_upload_is_freed_without_the_cyclic_gc() -> None:
    with no_cyclic_gc():
        before = live()
        h = Harness()
        h.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n\r\n" + b"a" * 100_000)
        lose_connection(h)
        assert live() == before


def test_a_connection_lost_while_queued_is_freed_once_the_pool_drops_the_job() -> None:
    with no_cyclic_gc():
        before = live()
        h = Harness(run_inline=False)
        h.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde")
        lose_connection(h)
        job = h.held.pop()
        job.drop()  # what the pool does with a cancelled job it dequeues
        del job
        assert live() == before


def streamer(environ, start_response):
    start_response("200 OK", [])
    return (b"x" * 65536 for _ in range(100))


def test_a_connection_lost_mid_download_is_freed_without_the_cyclic_gc() -> None:
    with no_cyclic_gc():
        before = live()
        h = Harness(streamer, run_inline=False)
        h.send(GET)
        job = h.held.pop()
        h.protocol.pauseProducing()  # a client that stopped reading
        thread = threading.Thread(target=job.run)
        thread.start()
        h.pump_until(lambda: h.protocol.current.on_writable is not None)
        lose_connection(h)
        h.pump_until(lambda: not thread.is_alive())
        h.pump_until(lambda: h.calls.empty())
        del job
        assert live() == before


def test_a_connection_lost_mid_file_download_closes_the_file_and_is_freed(tmp_path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"f" * 1024 * 1024)
    files = []

    def send_file(environ, start_response):
        h.protocol.pauseProducing()  # the client is slow: the file waits
        start_response("200 OK", [])
        files.append(open(path, "rb"))  # noqa: SIM115 - closed by the app's close()
        return environ["wsgi.file_wrapper"](files[0])

    with no_cyclic_gc():
        before = live()
        h = Harness(send_file)
        h.send(GET)
        assert live()["FileProducer"] == before["FileProducer"] + 1
        fds = len(os.listdir("/proc/self/fd"))
        lose_connection(h)
        assert len(os.listdir("/proc/self/fd")) == fds - 1, "the reactor's file must be closed"
        assert live() == before
    assert files[0].closed


def test_a_streamed_response_to_a_slow_client_is_freed_without_the_cyclic_gc() -> None:
    with no_cyclic_gc():
        before = live()
        h = Harness(streamer, run_inline=False)
        h.send(GET)
        job = h.held.pop()
        h.protocol.pauseProducing()
        thread = threading.Thread(target=job.run)
        thread.start()
        h.pump_until(lambda: h.protocol.current.on_writable is not None)  # the app waits
        h.protocol.resumeProducing()
        h.pump_until(lambda: not thread.is_alive() and h.calls.empty())
        assert h.protocol.current is None and h.take().endswith(b"0\r\n\r\n")
        lose_connection(h)
        del job
        assert live() == before


# -- --request-timeout bounds the app's work, not the client's download ------------------


def test_the_request_timeout_stops_while_the_client_is_not_reading() -> None:
    h = Harness(run_inline=False, request_timeout_s=3.0)
    h.send(GET)
    exchange = h.protocol.current
    exchange.start("200 OK", [])  # the app streams its response
    exchange.write(b"first")
    h.protocol.pauseProducing()  # ...to a client that is slow to take it
    h.advance(10)
    assert not h.closed, "time spent waiting on the client is not the app's"
    h.protocol.resumeProducing()
    h.advance(1)
    assert not h.closed
    h.advance(3)  # the app's own time runs on from where it stopped
    assert h.transport.disconnected, "an app still streaming past its time is cut"


class SlowSendTransport(StringTransport):
    """Each write takes a second of the clock, as a long download does in real time."""

    def __init__(self, clock: MemoryReactorClock) -> None:
        super().__init__()
        self.clock = clock

    def write(self, data: bytes) -> None:
        super().write(data)
        self.clock.advance(1.0)


def test_a_file_handed_to_the_reactor_is_not_cut_by_the_request_timeout(tmp_path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"f" * 1024 * 1024)  # 16 writes of 64 KiB: 16 s of the clock

    def send_file(environ, start_response):
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](open(path, "rb"))  # noqa: SIM115

    h = Harness(send_file, request_timeout_s=3.0)
    h.transport = SlowSendTransport(h.clock)
    h.protocol = h.factory.buildProtocol(None)
    h.protocol.makeConnection(h.transport)
    out = h.send(GET)
    assert not h.transport.disconnected, "the app's work ended when it handed the file over"
    assert out.startswith(b"HTTP/1.1 200 OK") and out.endswith(b"f" * 1024 * 1024)


# -- --max-connections -------------------------------------------------------------------


def test_at_max_connections_accepting_pauses_and_resumes_below_and_extras_get_503() -> None:
    h = Harness()
    calls: list[bool] = []
    h.factory.max_connections = 2  # server.py passes --max-connections (or its default)
    h.factory.accepting = calls.append
    second = h.factory.buildProtocol(None)
    second.makeConnection(StringTransport())
    assert calls == [False], "the second connection reaches the limit: stop accepting"
    # Accepted in the same burst, past the limit: answered at once, never read.
    extra_transport = StringTransport()
    h.factory.buildProtocol(None).makeConnection(extra_transport)
    assert extra_transport.value().startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Connection: close" in extra_transport.value() and extra_transport.disconnecting
    assert len(h.factory.connections) == 2
    second.connectionLost(None)
    assert calls == [False, True], "below the limit: accept again"
    assert h.send(GET).startswith(b"HTTP/1.1 200 OK")


def test_the_next_request_s_clock_does_not_carry_an_earlier_pause() -> None:
    h = Harness(run_inline=False, request_timeout_s=3.0)
    h.send(GET)
    exchange = h.protocol.current
    exchange.start("200 OK", [])
    h.protocol.pauseProducing()
    h.advance(10)  # the first response waits on the client...
    exchange.finish()  # ...and ends while it still does
    h.protocol.resumeProducing()
    h.send(GET)
    second = h.protocol.current
    second.start("200 OK", [])
    h.protocol.pauseProducing()
    h.protocol.resumeProducing()  # a short pause: the app's clock barely stops
    h.advance(4)
    assert h.transport.disconnected, "the second request's app ran past its 3 s"
