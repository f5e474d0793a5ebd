"""The WSGI container with real app threads, driven through the real HTTP/1.1 protocol.

Reactor tier with threads: the test thread plays the reactor. Calls from app threads
cross through the real Outbox (whose reactor is asleep until woken, so only a wake-up
makes them run); the test runs them, and reads what the client would get from a
StringTransport.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock, StringTransport

from treadle.config import Config
from treadle.deadlines import Deadlines
from treadle.dispatch import Dispatcher
from treadle.http.protocol import HTTPFactory
from treadle.pool import ThreadPool
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

    def __init__(self, app: Callable[..., Any], threads: int = 1, **settings: Any) -> None:
        self.clock = MemoryReactorClock()
        self.config = Config.from_settings(settings)
        self.deadlines = Deadlines(self.clock)
        self.deadlines.start()
        self.wake_ups: queue.Queue = queue.Queue()
        self.outbox = Outbox(self._call_from_thread, _Asleep())
        self.pool = ThreadPool(threads, 100, name="t-container")
        self.container = WSGIContainer(app, call_from_thread=self.outbox)
        self.finished: list[Any] = []
        self.factory = HTTPFactory(
            self.config,
            deadlines=self.deadlines,
            dispatch=Dispatcher(submit=self.submit),
            bodies=bodies,
            call_from_thread=self.outbox,
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
