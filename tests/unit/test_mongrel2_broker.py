"""The broker's routing with real ZeroMQ sockets over inproc:// and a hand-driven clock.

Mongrel2's side is a PUSH socket the test writes requests to; handlers are DEALER sockets
the test speaks the broker protocol with (READY, DONE, HEARTBEAT, BYE).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

zmq = pytest.importorskip("zmq")

from treadle.mongrel2 import broker as brokers  # noqa: E402
from treadle.mongrel2.message import request_message  # noqa: E402

SENDER = b"f400bf85-4538-4f7a-8908-67e313d515c2"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Setup:
    def __init__(self, context) -> None:
        self.context = context
        self.clock = Clock()
        self.mongrel2 = context.socket(zmq.PUSH)
        self.mongrel2.bind("inproc://m2")
        pull = context.socket(zmq.PULL)
        pull.connect("inproc://m2")
        router = context.socket(zmq.ROUTER)
        router.bind("inproc://backend")
        self.broker = brokers.Broker(pull, router, clock=self.clock)
        self.sockets = [self.mongrel2, pull, router]

    def handler(self, name: bytes, ready: int):
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, name)
        sock.connect("inproc://backend")
        self.sockets.append(sock)
        if ready:
            sock.send_multipart([b"READY", b"%d" % ready])
        self.pump()
        return sock

    def request(self, conn: bytes, path: bytes = b"/x", **extra: bytes) -> bytes:
        headers = {b"METHOD": b"GET", b"VERSION": b"HTTP/1.1", b"URI": path, b"PATH": path}
        headers.update({k.replace("_", "-").encode(): v for k, v in extra.items()})
        data = request_message(SENDER, conn, path, headers, b"")
        self.mongrel2.send(data)
        self.pump()
        return data

    def pump(self, rounds: int = 5) -> None:
        for _ in range(rounds):
            self.broker.poller.poll(20)  # inproc is quick, but not synchronous
            self.broker.next_heartbeat = self.clock.now  # poll_once must not block
            self.broker.poll_once()


def received(sock) -> list[list[bytes]]:
    frames = []
    while sock.poll(50):
        frames.append(sock.recv_multipart())
    return [f for f in frames if f[0] != b"HEARTBEAT"]


@pytest.fixture
def setup() -> Iterator[Setup]:
    context = zmq.Context()
    made = Setup(context)
    yield made
    for sock in made.sockets:
        sock.close(0)
    context.term()


def test_requests_go_only_to_handlers_with_free_threads(setup: Setup) -> None:
    a = setup.handler(b"a", 1)
    b = setup.handler(b"b", 1)
    first = setup.request(b"1")
    second = setup.request(b"2")
    third = setup.request(b"3")  # nobody has a free thread: it waits in the broker
    got_a, got_b = received(a), received(b)
    assert sorted([got_a, got_b]) == sorted([[[b"REQUEST", first]], [[b"REQUEST", second]]])
    assert len(setup.broker.queue) == 1
    # b finishes its request: the waiting one goes to b, not to a (still busy).
    done_conn = b"1" if got_b[0][1] == first else b"2"
    b.send_multipart([b"DONE", SENDER, done_conn, b"1"])
    setup.pump()
    assert received(b) == [[b"REQUEST", third]]
    assert received(a) == []


def test_a_client_stays_with_its_handler_and_its_disconnect_follows(setup: Setup) -> None:
    a = setup.handler(b"a", 1)
    b = setup.handler(b"b", 5)
    setup.request(b"7")
    holder, other = (a, b) if received(a) else (b, a)
    pipelined = setup.request(b"7")  # answered in order: same handler, credit or not
    assert received(holder) == [[b"REQUEST", pipelined]]
    notice = request_message(SENDER, b"7", b"@*", {b"METHOD": b"JSON"}, b'{"type":"disconnect"}')
    setup.mongrel2.send(notice)
    setup.pump()
    assert received(holder) == [[b"REQUEST", notice]]
    assert received(other) == []


def test_a_disconnect_drops_a_request_still_queued(setup: Setup) -> None:
    a = setup.handler(b"a", 0)
    setup.request(b"9")
    notice = request_message(SENDER, b"9", b"@*", {b"METHOD": b"JSON"}, b'{"type":"disconnect"}')
    setup.mongrel2.send(notice)
    setup.pump()
    assert not setup.broker.queue
    a.send_multipart([b"READY", b"1"])
    setup.pump()
    assert received(a) == []


def test_silent_handlers_are_dropped_and_a_restarted_broker_relearns(setup: Setup) -> None:
    a = setup.handler(b"a", 2)
    setup.clock.now += brokers.HEARTBEAT_S * (brokers.LIVENESS + 1)
    setup.broker.heartbeat()
    assert b"a" not in setup.broker.workers
    # Its next heartbeat says how many threads are free: it is taken back with that credit.
    a.send_multipart([b"HEARTBEAT", b"2"])
    setup.pump()
    assert setup.broker.workers[b"a"].credit == 2
    setup.request(b"1")
    assert len(received(a)) == 1


def test_bye_stops_requests_to_a_stopping_handler(setup: Setup) -> None:
    a = setup.handler(b"a", 3)
    a.send_multipart([b"BYE"])
    setup.pump()
    setup.request(b"1")
    assert received(a) == [[b"BYE"]]  # released at once: nothing was in its hands
    assert len(setup.broker.queue) == 1


def test_a_stopping_handler_is_released_once_its_requests_are_done(setup: Setup) -> None:
    a = setup.handler(b"a", 1)
    first = setup.request(b"5")
    assert received(a) == [[b"REQUEST", first]]
    b = setup.handler(b"b", 1)
    a.send_multipart([b"BYE"])
    setup.pump()
    later = setup.request(b"5")  # the same client, while a still answers its first request
    assert received(a) == []  # no BYE back yet: a request of ours is still in its hands
    assert received(b) == []  # held: answered in order, after a's
    a.send_multipart([b"DONE", SENDER, b"5", b"1"])
    setup.pump()
    assert received(a) == [[b"BYE"]]  # nothing follows: a may close without losing one
    assert received(b) == [[b"REQUEST", later]]
    assert b"a" not in setup.broker.workers
    a.send_multipart([b"DONE", SENDER, b"5", b"1"])  # late: must not bring a back
    setup.pump()
    assert b"a" not in setup.broker.workers
