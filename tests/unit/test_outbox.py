"""The outbox carries app threads' calls to the reactor: each runs once, in order, and the
reactor is woken only when it would otherwise sleep through them."""

from __future__ import annotations

from treadle.wsgi.bridge import Outbox


class Loop:
    """The reactor's side of the contract: its awake flag and its wake-up calls."""

    def __init__(self, awake: bool) -> None:
        self.awake = awake
        self.wake_ups: list = []

    def call_from_thread(self, f, *args) -> None:
        self.wake_ups.append((f, args))


def test_an_asleep_reactor_is_woken_once_per_batch() -> None:
    loop = Loop(awake=False)
    outbox = Outbox(loop.call_from_thread, loop)
    ran: list[int] = []
    outbox(ran.append, 1)
    outbox(ran.append, 2)
    assert len(loop.wake_ups) == 1
    f, args = loop.wake_ups[0]
    f(*args)  # the reactor runs the batch
    assert ran == [1, 2]
    outbox(ran.append, 3)
    assert len(loop.wake_ups) == 2, "a call after the batch ran needs a new wake-up"


def test_an_awake_reactor_is_not_woken_and_drains_the_calls_itself() -> None:
    loop = Loop(awake=True)
    outbox = Outbox(loop.call_from_thread, loop)
    ran: list[int] = []
    outbox(ran.append, 1)
    outbox.later(ran.append, 2)
    outbox.flush()
    assert loop.wake_ups == []
    assert outbox.drain_pending() is True
    assert ran == [1, 2]
    assert outbox.drain_pending() is False


def test_without_a_loop_every_batch_wakes_the_reactor() -> None:
    loop = Loop(awake=True)  # a reactor that never drains: its flag must be ignored
    outbox = Outbox(loop.call_from_thread)
    outbox(lambda: None)
    assert len(loop.wake_ups) == 1


def test_a_failing_call_does_not_stop_the_ones_after_it(caplog) -> None:
    loop = Loop(awake=True)
    outbox = Outbox(loop.call_from_thread, loop)
    ran: list[int] = []
    outbox(lambda: 1 / 0)
    outbox(ran.append, 1)
    outbox.drain_pending()
    assert ran == [1]
    assert "error in a call from an app thread" in caplog.text
