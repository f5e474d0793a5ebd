"""The reactor treadle's own commands run on: Twisted's epoll reactor minus a per-event toll.

Reactor layer. ``install()`` is called by the command-line entry points before anything
imports ``twisted.internet.reactor``; it must not be called by library code (a program that
embeds ``TreadleService`` keeps whatever reactor it chose), and it does nothing when a
reactor is already installed or the platform has no epoll.

Why: Twisted's ``EPollReactor.doPoll`` wraps every ready descriptor's doRead/doWrite in
``log.callWithLogger``, which pushes a legacy log context (the ``system`` prefix of
``twisted.python.log`` messages) through four Python frames. A profile of a keep-alive
request puts that at a tenth of the reactor thread's time, for a prefix treadle's stdlib
logging never reads. ``LeanEPollReactor`` dispatches events straight to
``_doReadOrWrite``, which still catches and logs a handler's error and disconnects it.

It also offers ``call_after_events(fn)``: run ``fn`` once the events of the current poll
have all been handled, before the reactor next blocks. The thread pool wakes a thread this
way, once per batch of requests, for less than ``callLater(0, ...)`` costs (a DelayedCall,
a heap push and a timeout computation per turn).
"""

from __future__ import annotations

import errno
import logging
import sys
from typing import Any

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

    installReactor(_lean_class(EPollReactor)())
    return True


def _lean_class(base: Any) -> Any:
    class LeanEPollReactor(base):  # type: ignore[misc, valid-type]
        """EPollReactor whose poll loop calls handlers without a log context per event."""

        def __init__(self) -> None:
            self._after_events: list[Any] = []
            super().__init__()

        def call_after_events(self, fn: Any) -> None:
            """Reactor thread only: run fn() after this poll's events, before blocking again."""
            self._after_events.append(fn)

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

        def doPoll(self, timeout: float | None) -> None:  # noqa: N802 - Twisted's name
            if self._after_events:
                self._run_after_events()  # scheduled by timed or thread calls
            try:
                events = self._poller.poll(
                    -1 if timeout is None else timeout, len(self._selectables)
                )
            except OSError as error:
                if error.errno == errno.EINTR:
                    return
                raise
            selectables = self._selectables
            handle = self._doReadOrWrite
            for fd, event in events:
                selectable = selectables.get(fd)
                if selectable is not None:
                    handle(selectable, fd, event)
            if self._after_events:
                self._run_after_events()

        doIteration = doPoll

    return LeanEPollReactor
