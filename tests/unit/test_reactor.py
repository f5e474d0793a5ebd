"""The lean epoll reactor: it delivers events like Twisted's, contains a handler's error, and
is what `treadle serve` installs (and only when nothing else was installed first)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
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


def test_work_a_drain_finds_as_the_reactor_goes_to_sleep_keeps_it_awake(reactor) -> None:
    queued = ["work"]
    seen_awake: list[bool] = []
    ran: list[str] = []

    def drain() -> bool:
        seen_awake.append(reactor.awake)
        if not queued:
            return False
        ran.append(queued.pop())
        return True

    reactor.add_drain(drain)
    started = time.monotonic()
    reactor.iterate(3)  # the drain before the poll finds work: the poll must not block 3 s
    assert ran == ["work"]
    assert time.monotonic() - started < 1.5, "the reactor slept with work drained"
    assert seen_awake[0] is False, "a drain before sleeping must see the reactor asleep"
    reactor.remove_drain(drain)


def test_responses_from_many_threads_all_arrive_without_lost_wake_ups(reactor) -> None:
    from treadle.wsgi.bridge import Outbox

    outbox = Outbox(reactor.callFromThread, reactor)
    reactor.add_drain(outbox.drain_pending)
    failures: list[str] = []

    def app_thread() -> None:
        try:
            for index in range(300):
                ran = threading.Event()
                outbox(ran.set)
                # The reactor blocks for 10 s per turn: a lost wake-up shows as a stall.
                if not ran.wait(5):
                    failures.append(f"call {index} waited for a wake-up that never came")
                    return
        finally:
            reactor.wakeUp()  # let the test's last turn end

    threads = [threading.Thread(target=app_thread) for _ in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while any(thread.is_alive() for thread in threads) and time.monotonic() < deadline:
        reactor.iterate(10)
    for thread in threads:
        thread.join(5)
    assert failures == []
    reactor.remove_drain(outbox.drain_pending)


class RecordingPoller:
    """The reactor's epoll object, with every poll's timeout written down."""

    def __init__(self, poller) -> None:
        self.poller = poller
        self.timeouts: list[float] = []

    def poll(self, timeout, maxevents=-1):
        self.timeouts.append(timeout)
        return self.poller.poll(timeout, maxevents)

    def __getattr__(self, name):
        return getattr(self.poller, name)


def after_traffic(reactor, spin_s: float, when=None):
    """A connection that has just sent a message (so the reactor is in a burst), with the
    idle spin set and every poll's timeout recorded from now on."""
    log: list = []
    client = connect(reactor, log)
    recorder = reactor._poller = RecordingPoller(reactor._poller)
    reactor.set_idle_spin(spin_s, when)
    client.sendall(b"one")
    spin(reactor, lambda: log)
    recorder.timeouts.clear()
    return client, log, recorder


def test_after_traffic_the_reactor_polls_briefly_before_it_sleeps(reactor) -> None:
    client, _log, recorder = after_traffic(reactor, 0.02)
    started = time.monotonic()
    reactor.iterate(0.2)  # nothing more arrives: spin up to 20 ms, then sleep
    spins = [t for t in recorder.timeouts if t == 0]
    assert len(spins) >= 2, recorder.timeouts
    assert recorder.timeouts[-1] != 0, "it must sleep once the window has passed"
    assert time.monotonic() - started >= 0.02
    recorder.timeouts.clear()
    reactor.iterate(0.05)  # no traffic since: sleep at once, no spin
    assert 0 not in recorder.timeouts, recorder.timeouts
    client.close()


def test_a_spinning_reactor_handles_what_arrives_within_the_window(reactor) -> None:
    client, log, recorder = after_traffic(reactor, 5.0)
    threading.Timer(0.05, client.sendall, (b"two",)).start()
    reactor.iterate(10)  # the spin finds the second message: no blocking poll at all
    assert ("data", b"two") in log
    assert set(recorder.timeouts) == {0}, "the bytes should be found by a non-blocking poll"
    client.close()


def test_no_spin_while_the_condition_is_false(reactor) -> None:
    # e.g. a request is running in the pool
    client, _log, recorder = after_traffic(reactor, 1.0, when=lambda: False)
    reactor.iterate(0.05)
    assert 0 not in recorder.timeouts, recorder.timeouts
    client.close()


def test_the_spin_fades_under_sparse_traffic_and_returns_for_quick_clients(reactor) -> None:
    client, log, recorder = after_traffic(reactor, 0.02)

    def message_after(delay: float) -> int:
        """One message arriving ``delay`` s after the reactor idles; its non-blocking polls."""
        count = len(log)
        recorder.timeouts.clear()
        if delay:
            threading.Timer(delay, client.sendall, (b"x",)).start()
        else:
            client.sendall(b"x")
        deadline = time.monotonic() + 10
        while len(log) == count and time.monotonic() < deadline:
            reactor.iterate(1)
        assert len(log) > count, "the message never arrived"
        return recorder.timeouts.count(0)

    sparse = [message_after(0.06) for _ in range(8)]  # each gap is longer than any window
    assert sparse[0] > 0, "the first idle gap after traffic is spun"
    assert sparse[-2:] == [0, 0], f"spinning went on under sparse traffic: {sparse}"
    message_after(0)  # a client that answers at once: the window grows back
    assert message_after(0.001) > 0, "a quick client is caught by the spin again"
    client.close()


def test_the_idle_spin_is_opt_in() -> None:
    # A spin spends CPU per request (billed under container quotas) and helps only where
    # waking a core is slow: off unless asked for, as HAProxy's busy-polling.
    from treadle.config import Config

    assert Config().pool.idle_spin_us == 0
