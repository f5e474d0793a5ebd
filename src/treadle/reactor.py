"""The reactor treadle's own commands run on: Twisted's epoll reactor, leaner and quicker to wake.

Reactor layer. ``install()`` is called by the command-line entry points before anything
imports ``twisted.internet.reactor``; it must not be called by library code (a program that
embeds ``TreadleService`` keeps whatever reactor it chose), and it does nothing when a
reactor is already installed or the platform has no epoll. It must not know about HTTP,
the pool or the bridge: those register plain callables.

What it adds to ``EPollReactor``, each measured (docs/design/decisions.md):

- No log context per event. Twisted's ``doPoll`` wraps every ready descriptor's
  doRead/doWrite in ``log.callWithLogger``, four Python frames for a legacy log prefix
  treadle's stdlib logging never reads (a tenth of the reactor thread's time). Events go
  straight to ``_doReadOrWrite``, which still catches a handler's error and drops only
  that connection.
- ``call_after_events(fn)``: run ``fn`` once the events of the current poll are handled,
  before the reactor next blocks. The pool wakes a thread this way, once per batch, for
  less than ``callLater(0, ...)`` costs.
- Drains (``add_drain``) and the ``awake`` flag: while ``awake`` is True the reactor will
  run every drain before it blocks, so an app thread that queued a response need not wake
  it (two syscalls and a loop turn saved per response).
- A bounded, adaptive idle spin (``set_idle_spin``): after handling I/O, and only while a
  caller-given condition holds (the pool has no request running), poll without blocking
  for a few tens of microseconds before sleeping. On a virtual machine a core that halts
  costs ~50 us to wake, more than the whole request; a client that sends its next request
  within the window finds the reactor still running. Like Linux's haltpoll governor, the
  window grows while the next event comes within the longest window and shrinks to nothing
  while it does not, so sparse traffic costs no CPU; 0 (the default) turns it off.

The loop reads Twisted internals (``_poller``, ``_selectables``, ``_doReadOrWrite``...):
twisted_internals.py lists them, and ``build`` falls back to the stock reactor, with one
warning, when the installed Twisted lacks one.
"""

from __future__ import annotations

import errno
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from treadle import twisted_internals

log = logging.getLogger("treadle.reactor")


def install() -> bool:
    """Install LeanEPollReactor as the global reactor if none is yet. True if it did."""
    if "twisted.internet.reactor" in sys.modules:
        return False
    try:
        from twisted.internet.epollreactor import EPollReactor
    except ImportError:  # no epoll on this platform: Twisted's default is fine
        return False
    from twisted.internet.main import installReactor

    reactor = build(EPollReactor)
    installReactor(reactor)
    return hasattr(reactor, "add_drain")


def build(base: Any) -> Any:
    """A LeanEPollReactor on ``base`` (EPollReactor), or a plain ``base()`` when the
    installed Twisted lacks an internal the lean loop uses (one warning says which)."""
    reactor = _lean_class(base)()
    lacking = twisted_internals.lean_reactor_lacks(reactor)
    if not lacking:
        return reactor
    twisted_internals.warn_once("the lean reactor", "using Twisted's stock reactor", lacking)
    _discard(reactor)
    return base()


def _discard(reactor: Any) -> None:
    """Close what a reactor that will never run opened (its waker pipe, its epoll)."""
    waker = getattr(reactor, "waker", None)
    if waker is not None:
        waker.connectionLost(None)
    poller = getattr(reactor, "_poller", None)
    if poller is not None:
        poller.close()


def _lean_class(base: Any) -> Any:
    class LeanEPollReactor(base):  # type: ignore[misc, valid-type]
        """EPollReactor with a lean event loop, drains and a bounded idle spin."""

        def __init__(self) -> None:
            self._after_events: list[Any] = []
            self._drains: list[Callable[[], bool]] = []
            self._spin_max = 0.0  # the longest spin allowed
            self._spin_s = 0.0  # the current window: between 0 and _spin_max
            self._spin_when: Callable[[], bool] = lambda: False
            self._busy = False  # the last poll returned events: more may follow at once
            # True while the reactor is handling events: it will run every drain before it
            # next blocks, so a thread that queued work for a drain need not wake it.
            self.awake = True
            super().__init__()

        def call_after_events(self, fn: Any) -> None:
            """Reactor thread only: run fn() after this poll's events, before blocking again."""
            self._after_events.append(fn)

        def add_drain(self, drain: Callable[[], bool]) -> None:
            """Reactor thread: call ``drain()`` after every poll's events and before blocking.

            ``drain`` runs what other threads queued for the reactor and returns True if
            there was anything. Before blocking it runs with ``awake`` False: a thread that
            queues work from then on must wake the reactor itself.
            """
            self._drains.append(drain)

        def remove_drain(self, drain: Callable[[], bool]) -> None:
            self._drains.remove(drain)

        def set_idle_spin(self, seconds: float, when: Callable[[], bool] | None = None) -> None:
            """After handling I/O, poll up to ``seconds`` before blocking, if ``when()``.

            0 seconds turns the spin off; without ``when`` it may always spin.
            """
            self._spin_max = self._spin_s = seconds
            self._spin_when = when or (lambda: True)

        def _run_after_events(self) -> None:
            pending = self._after_events
            while pending:
                self._after_events = []
                for fn in pending:
                    try:
                        fn()
                    except Exception:
                        log.exception("error in a call after reactor events")
                pending = self._after_events

        def _drain(self) -> bool:
            worked = False
            for drain in self._drains:
                if drain():
                    worked = True
            return worked

        def _spin(self, timeout: float | None) -> list[tuple[int, int]]:
            """Poll without blocking for up to the current window (or ``timeout``)."""
            window = self._spin_s if timeout is None else min(self._spin_s, timeout)
            poll = self._poller.poll
            size = len(self._selectables)
            clock = time.perf_counter
            end = clock() + window
            while True:
                events = poll(0, size)
                if events or clock() >= end:
                    return events

        def _adapt_spin(self, caught: bool, gap_s: float) -> None:
            """After a spin that missed: grow the window if the longest would have caught."""
            window, longest = self._spin_s, self._spin_max
            if caught and gap_s <= longest:
                self._spin_s = min(longest, max(window * 2, longest / 4))
            else:
                # Sparse traffic: every spin here is wasted CPU. Halve it, down to nothing.
                window /= 2
                self._spin_s = window if window >= longest / 16 else 0.0

        def doPoll(self, timeout: float | None) -> None:  # noqa: N802 - Twisted's name
            if self._after_events:
                self._run_after_events()  # scheduled by timed or thread calls
            self.awake = False
            if self._drains and self._drain():
                timeout = 0  # work arrived as the flag fell: poll, but do not block
            if self._after_events or self._newTimedCalls or self.threadCallQueue:
                timeout = 0
            spinning = bool(self._busy and timeout != 0 and self._spin_max and self._spin_when())
            try:
                events = self._spin(timeout) if spinning and self._spin_s else []
                if not events:
                    started = time.perf_counter() if spinning else 0.0
                    events = self._poller.poll(
                        -1 if timeout is None else timeout, len(self._selectables)
                    )
                    if spinning:
                        gap_s = self._spin_s + time.perf_counter() - started
                        self._adapt_spin(bool(events), gap_s)
            except OSError as error:
                self.awake = True
                if error.errno == errno.EINTR:
                    return
                raise
            self.awake = True
            self._busy = bool(events)
            selectables = self._selectables
            handle = self._doReadOrWrite
            for fd, event in events:
                selectable = selectables.get(fd)
                if selectable is not None:
                    handle(selectable, fd, event)
            if self._after_events:
                self._run_after_events()
            if self._drains:
                self._drain()

        doIteration = doPoll

    return LeanEPollReactor
