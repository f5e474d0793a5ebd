"""treadle.blocking against a real reactor running in a background thread.

The reactor is a private SelectReactor instance, never installed as the global one: it can be
started and stopped per module without touching twisted.internet.reactor (which runs once per
process), so no other test module can collide with it. blocking.install() takes the reactor
as an argument, which is all this needs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.selectreactor import SelectReactor
from twisted.internet.task import deferLater
from twisted.internet.threads import blockingCallFromThread

from treadle import blocking
from treadle.cancel import current_request, set_current_request
from treadle.errors import NotInAppThread, RequestCancelled, WaitTimeout
from treadle.timing import RequestRecord

DEADLINE_S = 10.0


@pytest.fixture(scope="module")
def reactor() -> Iterator[SelectReactor]:
    reactor = SelectReactor()
    running = threading.Event()
    reactor.callWhenRunning(running.set)
    thread = threading.Thread(
        target=reactor.run, kwargs={"installSignalHandlers": False}, name="test-reactor"
    )
    thread.start()
    assert running.wait(DEADLINE_S), "reactor did not start"
    blockingCallFromThread(reactor, blocking.install, reactor)
    try:
        yield reactor
    finally:
        blockingCallFromThread(reactor, blocking.uninstall)
        reactor.callFromThread(reactor.stop)
        thread.join(DEADLINE_S)
        assert not thread.is_alive(), "reactor did not stop"


def in_worker(fn: Callable[[], Any], record: RequestRecord | None = None) -> threading.Thread:
    """Run ``fn`` in a new app thread, with ``record`` as its current request; the outcome
    lands on ``thread.outcome`` as ("ok", value) or ("error", exception)."""

    def target() -> None:
        set_current_request(record)
        try:
            thread.outcome = ("ok", fn())  # type: ignore[attr-defined]
        except BaseException as error:
            thread.outcome = ("error", error)  # type: ignore[attr-defined]
        finally:
            set_current_request(None)

    thread = threading.Thread(target=target, name="test-app")
    thread.start()
    return thread


def outcome(thread: threading.Thread) -> tuple[str, Any]:
    thread.join(DEADLINE_S)
    assert not thread.is_alive(), "the app thread is still blocked"
    return thread.outcome  # type: ignore[attr-defined,no-any-return]


def cancellable(called_in_reactor: threading.Event | None = None) -> tuple[list[str], Callable]:
    """A factory, run in the reactor, of a Deferred that never fires by itself; ``log`` records
    the canceller running (and in which thread)."""
    log: list[str] = []

    def make() -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred(
            lambda _d: log.append(threading.current_thread().name)
        )
        if called_in_reactor is not None:
            called_in_reactor.set()
        return d

    return log, make


def test_wait_on_a_deferred(reactor: SelectReactor) -> None:
    assert blocking.wait(defer.succeed("ready")) == "ready"


def test_wait_on_a_deferred_that_fires_later(reactor: SelectReactor) -> None:
    d: defer.Deferred[str] = defer.Deferred()
    reactor.callFromThread(reactor.callLater, 0.01, d.callback, "later")
    assert blocking.wait(d) == "later"


def test_wait_on_a_coroutine(reactor: SelectReactor) -> None:
    async def fetch() -> str:
        value = await deferLater(reactor, 0.01, lambda: "from the reactor")
        return f"{value} in {threading.current_thread().name}"

    assert blocking.wait(fetch()) == "from the reactor in test-reactor"


def test_wait_on_a_callable_runs_it_in_the_reactor_thread(reactor: SelectReactor) -> None:
    assert blocking.wait(lambda: threading.current_thread().name) == "test-reactor"
    assert blocking.wait(lambda: defer.succeed(7)) == 7


def test_wait_on_a_plain_value(reactor: SelectReactor) -> None:
    assert blocking.wait(42) == 42
    assert blocking.wait(None) is None


def test_failure_raises_the_original_exception(reactor: SelectReactor) -> None:
    with pytest.raises(KeyError, match="missing"):
        blocking.wait(defer.fail(KeyError("missing")))

    def broken() -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input") as raised:
        blocking.wait(broken)
    # The traceback reaches into the reactor thread, where the function raised.
    assert any(entry.name == "broken" for entry in raised.traceback)

    async def failing() -> None:
        await deferLater(reactor, 0.001, lambda: None)
        raise LookupError("after a while")

    with pytest.raises(LookupError, match="after a while"):
        blocking.wait(failing())


def test_timeout_raises_and_runs_the_canceller(reactor: SelectReactor) -> None:
    log, make = cancellable()
    with pytest.raises(WaitTimeout):
        blocking.wait(make, timeout=0.05)
    assert log == ["test-reactor"]  # cancelled in the reactor thread, before wait() returned


def test_a_result_in_time_beats_the_timeout(reactor: SelectReactor) -> None:
    assert blocking.wait(defer.succeed("quick"), timeout=5.0) == "quick"
    assert blocking.wait(defer.succeed("already there"), timeout=0) == "already there"


def test_cancelling_the_request_from_another_thread(reactor: SelectReactor) -> None:
    record = RequestRecord("GET", "/slow", queued_at=1.0)
    started = threading.Event()
    log, make = cancellable(started)
    app = in_worker(lambda: blocking.wait(make), record)
    assert started.wait(DEADLINE_S)
    record.cancel.set("client went away")  # this (test) thread is neither app nor reactor
    kind, error = outcome(app)
    assert kind == "error" and isinstance(error, RequestCancelled)
    assert "client went away" in str(error)
    assert log == ["test-reactor"]
    assert record.waiting_on is None and record.wait_count == 1


def test_cancelling_the_request_from_the_reactor_thread(reactor: SelectReactor) -> None:
    record = RequestRecord("GET", "/slow", queued_at=1.0)
    started = threading.Event()
    log, make = cancellable(started)
    app = in_worker(lambda: blocking.call(make), record)
    assert started.wait(DEADLINE_S)
    blockingCallFromThread(reactor, record.cancel.set, "disconnect")
    kind, error = outcome(app)
    assert kind == "error" and isinstance(error, RequestCancelled)
    assert log == ["test-reactor"]


def test_a_token_set_beforehand_raises_at_once(reactor: SelectReactor) -> None:
    record = RequestRecord("GET", "/", queued_at=1.0)
    record.cancel.set("timeout")
    called: list[bool] = []

    async def never_run() -> None:
        called.append(True)

    kind, error = outcome(in_worker(lambda: blocking.wait(never_run()), record))
    assert kind == "error" and isinstance(error, RequestCancelled)
    kind, error = outcome(in_worker(lambda: blocking.call(called.append, True), record))
    assert kind == "error" and isinstance(error, RequestCancelled)
    assert called == [] and record.wait_count == 0


def test_call_returns_the_result(reactor: SelectReactor) -> None:
    def add(a: int, b: int, *, scale: int = 1) -> int:
        assert threading.current_thread().name == "test-reactor"
        return (a + b) * scale

    assert blocking.call(add, 2, 3, scale=10) == 50
    assert blocking.call(defer.succeed, "deferred") == "deferred"
    assert blocking.call(deferLater, reactor, 0.001, lambda: "later") == "later"
    with pytest.raises(ZeroDivisionError):
        blocking.call(lambda: 1 / 0)


def test_wait_in_the_reactor_thread_raises_instead_of_deadlocking(
    reactor: SelectReactor,
) -> None:
    def attempt() -> BaseException | None:
        try:
            blocking.wait(defer.succeed(1))
        except NotInAppThread as error:
            return error
        return None

    error = blockingCallFromThread(reactor, attempt)
    assert isinstance(error, NotInAppThread)
    assert "reactor thread" in str(error)


def test_wait_without_a_server_raises(reactor: SelectReactor) -> None:
    blockingCallFromThread(reactor, blocking.uninstall)
    try:
        with pytest.raises(NotInAppThread, match="no treadle server is running"):
            blocking.wait(defer.succeed(1))
        with pytest.raises(NotInAppThread, match="no treadle server is running"):
            blocking.call(len, "abc")
    finally:
        blockingCallFromThread(reactor, blocking.install, reactor)
    assert blocking.wait(defer.succeed("back")) == "back"


def test_uninstall_ends_pending_waits(reactor: SelectReactor) -> None:
    started = threading.Event()
    log, make = cancellable(started)
    app = in_worker(lambda: blocking.wait(make))
    assert started.wait(DEADLINE_S)
    try:
        blockingCallFromThread(reactor, blocking.uninstall)
        kind, error = outcome(app)
    finally:
        blockingCallFromThread(reactor, blocking.install, reactor)
    assert kind == "error" and isinstance(error, RequestCancelled)
    assert log == ["test-reactor"]


def test_timings_are_recorded_on_the_current_request(reactor: SelectReactor) -> None:
    record = RequestRecord("GET", "/report", queued_at=1.0)

    def seen_while_pending() -> defer.Deferred[str | None]:
        # Runs in the reactor thread while the app thread waits.
        return deferLater(reactor, 0.05, lambda: record.waiting_on)

    def app() -> str | None:
        assert current_request() is record
        first = blocking.wait(seen_while_pending)
        blocking.wait(defer.succeed(None))
        return first

    kind, waiting_on = outcome(in_worker(app, record))
    assert kind == "ok"
    assert waiting_on is not None and "seen_while_pending" in waiting_on
    assert record.waiting_on is None
    assert record.wait_count == 2
    assert record.wait_s >= 0.05
