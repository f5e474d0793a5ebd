"""The lean epoll reactor: it delivers events like Twisted's, contains a handler's error, and
is what `treadle serve` installs (and only when nothing else was installed first)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
from twisted.internet import protocol

epollreactor = pytest.importorskip("twisted.internet.epollreactor")

from treadle.reactor import _lean_class  # noqa: E402

DEADLINE_TURNS = 200


class Recorder(protocol.Protocol):
    def __init__(self, log: list, fail_on: bytes | None = None) -> None:
        self.log = log
        self.fail_on = fail_on

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        self.log.append(("data", data))
        if self.fail_on is not None and self.fail_on in data:
            raise RuntimeError("handler bug")

    def connectionLost(self, reason: object = None) -> None:  # noqa: N802
        self.log.append(("lost", None))


def spin(reactor, until) -> None:
    for _ in range(DEADLINE_TURNS):
        if until():
            return
        reactor.iterate(0.05)
    raise AssertionError("condition not reached within the turn budget")


@pytest.fixture
def reactor():
    reactor = _lean_class(epollreactor.EPollReactor)()
    yield reactor
    for selectable in reactor.removeAll():
        selectable.loseConnection()
    reactor.iterate(0)
    reactor.waker.connectionLost(None)  # closes the waker's pipe


def connect(reactor, log: list, fail_on: bytes | None = None):
    server_side, client = socket.socketpair()
    reactor.adoptStreamConnection(
        server_side.fileno(),
        socket.AF_UNIX,
        protocol.Factory.forProtocol(lambda: Recorder(log, fail_on)),
    )
    server_side.close()  # the reactor holds its own duplicate
    return client


def test_data_reaches_the_protocol(reactor) -> None:
    log: list = []
    client = connect(reactor, log)
    client.sendall(b"hello")
    spin(reactor, lambda: log)
    assert log == [("data", b"hello")]
    client.close()
    spin(reactor, lambda: ("lost", None) in log)


def test_a_failing_handler_loses_only_its_connection(reactor) -> None:
    broken_log: list = []
    healthy_log: list = []
    broken = connect(reactor, broken_log, fail_on=b"boom")
    healthy = connect(reactor, healthy_log)
    broken.sendall(b"boom")
    spin(reactor, lambda: ("lost", None) in broken_log)
    healthy.sendall(b"still here")
    spin(reactor, lambda: healthy_log)
    assert healthy_log == [("data", b"still here")]
    assert broken.recv(10) == b""  # the server side was closed
    broken.close()
    healthy.close()


def test_threads_calling_in_wake_the_reactor(reactor) -> None:
    import threading

    seen: list = []
    threading.Thread(target=lambda: reactor.callFromThread(seen.append, "called")).start()
    spin(reactor, lambda: seen)
    assert seen == ["called"]


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def test_install_makes_it_the_global_reactor() -> None:
    out = run_python(
        "from treadle import reactor; ok = reactor.install();"
        "from twisted.internet import reactor as r; print(ok, type(r).__name__)"
    )
    assert out == "True LeanEPollReactor"


def test_install_leaves_a_reactor_chosen_first_alone() -> None:
    out = run_python(
        "from twisted.internet import selectreactor; selectreactor.install();"
        "from treadle import reactor; ok = reactor.install();"
        "from twisted.internet import reactor as r; print(ok, type(r).__name__)"
    )
    assert out == "False SelectReactor"


def test_calls_after_events_run_once_the_whole_batch_is_handled(reactor) -> None:
    log: list = []

    class Scheduling(Recorder):
        def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
            super().dataReceived(data)
            reactor.call_after_events(lambda: log.append(("after", data)))

    clients = []
    for _ in range(3):
        server_side, client = socket.socketpair()
        reactor.adoptStreamConnection(
            server_side.fileno(),
            socket.AF_UNIX,
            protocol.Factory.forProtocol(lambda: Scheduling(log)),
        )
        server_side.close()
        clients.append(client)
    for index, client in enumerate(clients):
        client.sendall(b"%d" % index)
    spin(reactor, lambda: len([entry for entry in log if entry[0] == "after"]) == 3)
    # Every read of the poll came before any call scheduled during it.
    kinds = [kind for kind, _ in log]
    assert kinds == ["data"] * 3 + ["after"] * 3, log
    for client in clients:
        client.close()


def test_a_call_after_events_scheduled_outside_a_poll_does_not_wait_for_one(reactor) -> None:
    ran: list = []
    reactor.callLater(0, lambda: reactor.call_after_events(lambda: ran.append(time.monotonic())))
    started = time.monotonic()
    reactor.iterate(3)  # timed calls, then a poll that must run it before blocking for 3 s
    assert len(ran) == 1
    assert ran[0] - started < 1.5, "the call waited for the poll to time out"
