"""One coarse timer wheel for every connection deadline.

Reactor layer: Twisted's IReactorTime only. A callLater per request would cost a
heap push and a cancel on the hot path; instead each connection keeps a plain
``deadline`` float (or None) and one LoopingCall checks them all every tick. A
deadline fires up to one tick late, which is fine for timeouts of seconds. Must
not block, and must not keep strong references to closed connections.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.task import LoopingCall

log = logging.getLogger("treadle")


class HasDeadline(Protocol):
    deadline: float | None

    def deadline_passed(self) -> None: ...


class Deadlines:
    """Ticks every ``tick_s``; ``now`` is the time of the last tick (a coarse clock)."""

    def __init__(self, clock: Any, tick_s: float = 1.0) -> None:
        self.clock = clock
        self.tick_s = tick_s
        self.now = clock.seconds()
        self.watched: set[HasDeadline] = set()
        self.on_tick: list[Callable[[float], None]] = []
        self._loop = LoopingCall(self._tick)
        self._loop.clock = clock

    def start(self) -> None:
        if not self._loop.running:
            self._loop.start(self.tick_s, now=True)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def _tick(self) -> None:
        now = self.now = self.clock.seconds()
        for hook in self.on_tick:
            hook(now)
        expired = [
            item for item in self.watched if item.deadline is not None and item.deadline <= now
        ]
        for item in expired:
            item.deadline = None
            try:
                item.deadline_passed()
            except Exception:
                log.exception("error while handling a timeout")
