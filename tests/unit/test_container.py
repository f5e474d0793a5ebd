"""The WSGI container with real app threads, driven through the real HTTP/1.1 protocol.

Reactor tier with threads: the test thread plays the reactor. Calls from app threads
cross through the real Outbox (whose reactor is asleep until woken, so only a wake-up
makes them run); the test runs them, and reads what the client would get from a
StringTransport.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock, StringTransport

from treadle.config import Config
from treadle.deadlines import Deadlines
from treadle.dispatch import Dispatcher
from treadle.hardcancel import HardCanceller, raise_in_thread
from treadle.http.protocol import HTTPFactory
from treadle.pool import ThreadPool
from treadle.timing import RequestRecord
from treadle.wsgi import body as bodies
from treadle.wsgi.bridge import Outbox
from treadle.wsgi.container import WSGIContainer

DEADLINE_S = 10.0
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


class _Asleep:
    """The reactor's awake flag for the Outbox: asleep, so app threads must wake it."""

    awake = False


class Reactor:
    """The test thread as the reactor: runs what app threads send it, when the test pumps."""

    def __init__(
        self, app: Callable[..., Any], threads: int = 1, hard_cancel: bool = False, **settings: Any
    ) -> None:
        self.clock = MemoryReactorClock()
        self.config = Config.from_settings(settings)
        self.deadlines = Deadlines(self.clock)
        self.deadlines.start()
        self.wake_ups: queue.Queue = queue.Queue()
        self.outbox = Outbox(self._call_from_thread, _Asleep())
        self.pool = ThreadPool(threads, 100, name="t-container")
        self.container = WSGIContainer(app, call_from_thread=self.outbox, hard_cancel=hard_cancel)
        self.finished: list[Any] = []
        self.factory = HTTPFactory(
            self.config,
            deadlines=self.deadlines,
            dispatch=Dispatcher(submit=self.submit),
            bodies=bodies,
            records=RequestRecord,
            on_finished=self.finished.append,
        )
        self.pool.start()

    def _call_from_thread(self, f: Callable[..., Any], *args: Any) -> None:
        self.wake_ups.put((f, args))

    def submit(self, exchange: Any) -> bool:
        return self.pool.submit(self.container.job(exchange))

    def connect(self) -> tuple[Any, StringTransport]:
        transport = StringTransport()
        protocol = self.factory.buildProtocol(None)
        protocol.makeConnection(transport)
        return protocol, transport

    def pump_until(self, predicate: Callable[[], bool], what: str) -> None:
        """Run the reactor's side (wake-ups from app threads) until ``predicate()``."""
        deadline = time.monotonic() + DEADLINE_S
        while not predicate():
            left = deadline - time.monotonic()
            assert left > 0, f"not reached in {DEADLINE_S} s: {what}"
            try:
                f, args = self.wake_ups.get(timeout=min(left, 0.05))
            except queue.Empty:
                continue
            f(*args)

    def stop(self) -> None:
        self.pool.stop(5)
        self.deadlines.stop()


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        assert time.monotonic() < deadline, f"not reached in {DEADLINE_S} s: {what}"
        time.sleep(0.001)  # polling a condition with a deadline


@pytest.fixture
def reactor() -> Iterator[Callable[..., Reactor]]:
    made: list[Reactor] = []

    def make(app: Callable[..., Any], threads: int = 1, **settings: Any) -> Reactor:
        made.append(Reactor(app, threads, **settings))
        return made[-1]

    yield make
    for each in made:
        each.stop()


# -- close() runs after the response is sent (issue 10, item 16) --------------------------


class WholeBody:
    """Like Django's HttpResponse: whole (streaming is False), with a close() that blocks."""

    streaming = False

    def __init__(self, release: threading.Event, log: list[str]) -> None:
        self.release = release
        self.log = log

    def __iter__(self) -> Iterator[bytes]:
        return iter([b"whole body"])

    def close(self) -> None:
        self.log.append("close start")
        self.release.wait(DEADLINE_S)
        self.log.append("close end")


def test_a_whole_response_is_sent_while_close_still_runs(reactor) -> None:
    release = threading.Event()
    log: list[str] = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return WholeBody(release, log)

    r = reactor(app)
    _protocol, transport = r.connect()
    _protocol.dataReceived(GET)
    try:
        r.pump_until(lambda: transport.value().endswith(b"whole body"), "the response is sent")
        assert transport.value().startswith(b"HTTP/1.1 200 OK\r\n")
        assert "close end" not in log, "close() is still blocked, yet the client has it all"
    finally:
        release.set()
    r.pump_until(lambda: "close end" in log, "close() returns")


# -- a hard cancel lands only in the app code it was meant for (issue 10, item 13) ---------


class PausedReactor:
    """The reactor's hard-cancel check in its own thread, stopped by a trace hook on its way
    into raise_in_thread: it has decided to raise, and has not raised yet. The race window,
    held open for as long as the test wants."""

    def __init__(self, record: Any) -> None:
        self.paused = threading.Event()
        self.go = threading.Event()
        self.thread = threading.Thread(target=self._check, args=(record,), name="t-reactor")
        self.thread.start()
        assert self.paused.wait(DEADLINE_S), "the canceller never decided to raise"

    def _check(self, record: Any) -> None:
        sys.settrace(self._trace)
        try:
            HardCanceller(0.0).check([record], time.perf_counter())
        finally:
            sys.settrace(None)

    def _trace(self, frame: Any, event: str, _arg: Any) -> None:
        if event == "call" and frame.f_code is raise_in_thread.__code__:
            sys.settrace(None)
            self.paused.set()
            self.go.wait(DEADLINE_S)

    def resume(self) -> None:
        self.go.set()
        self.thread.join(DEADLINE_S)
        assert not self.thread.is_alive()


def in_hard_cancel_gate(thread: threading.Thread) -> bool:
    """True while ``thread`` is inside the gate that withdraws a pending hard cancel."""
    frame = sys._current_frames().get(thread.ident or 0)
    while frame is not None:
        if frame.f_code.co_name == "leave" and frame.f_code.co_filename.endswith("hardcancel.py"):
            return True
        frame = frame.f_back
    return False


def busy_until(event: threading.Event) -> None:
    """App code that ignores its cancel token (a hard cancel lands when a wait returns)."""
    while not event.wait(0.005):
        pass


def test_a_hard_cancel_decided_while_the_app_ran_does_not_cut_its_close_short(reactor) -> None:
    started, finish, release = threading.Event(), threading.Event(), threading.Event()
    log: list[str] = []

    def app(environ, start_response):
        started.set()
        busy_until(finish)
        start_response("200 OK", [])
        return WholeBody(release, log)

    r = reactor(app, hard_cancel=True)
    protocol, _transport = r.connect()
    protocol.dataReceived(GET)
    assert started.wait(DEADLINE_S)
    (record,) = r.container.running
    record.cancel_now("request timeout")
    paused = PausedReactor(record)
    try:
        finish.set()  # the app returns while the reactor is about to raise in its thread
        wait_until(lambda: record.thread_ident == 0, "the app's code has returned")
    finally:
        paused.resume()
    release.set()
    wait_until(lambda: "close end" in log, "close() runs to its end, uninterrupted")
    assert log == ["close start", "close end"]


def test_a_hard_cancel_decided_while_the_app_ran_never_reaches_the_next_request(reactor) -> None:
    started, finish, second = threading.Event(), threading.Event(), threading.Event()
    go_on = threading.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/first":
            started.set()
            busy_until(finish)
        else:
            second.set()
            go_on.wait(DEADLINE_S)  # a hard cancel aimed here would land as this returns
        start_response("200 OK", [])
        return [environ["PATH_INFO"].encode()]

    r = reactor(app, hard_cancel=True)
    first, _ = r.connect()
    first.dataReceived(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
    assert started.wait(DEADLINE_S)
    (record,) = r.container.running
    record.cancel_now("request timeout")
    protocol, transport = r.connect()
    protocol.dataReceived(b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n")  # queued behind
    (thread,) = r.pool._threads
    paused = PausedReactor(record)
    try:
        finish.set()
        # The thread moves on to the second request, or waits at its gate for the reactor.
        wait_until(
            lambda: second.is_set() or in_hard_cancel_gate(thread),
            "the thread has left the first request's app code",
        )
    finally:
        paused.resume()
    go_on.set()
    r.pump_until(lambda: transport.value().endswith(b"/second"), "the second request is answered")
    assert transport.value().startswith(b"HTTP/1.1 200 OK\r\n")
