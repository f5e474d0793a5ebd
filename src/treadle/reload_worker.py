"""The dev reloader's policy for the supervisor: one worker, restarted when a file changes.

Composition layer, used only by reload.py in the parent. It is the supervisor's Arbiter
(supervisor/arbiter.py: the same loop, held sockets, child protocol and signals) with the
development rules: a change stops the worker before its replacement starts (the new code
may not load); a worker that ends by itself (the app failed to load) is logged once and a
FailurePage answers on the held sockets until the next change; no heartbeat kill (a
developer may sit in a debugger). It never imports the app and never runs a reactor.
"""

from __future__ import annotations

import logging
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from treadle.config import Config
from treadle.reload_failure import FailurePage, OutputTail, describe
from treadle.supervisor.arbiter import Arbiter
from treadle.supervisor.process import STOPPING, WorkerProcess
from treadle.supervisor.sockets import Held

log = logging.getLogger("treadle")


class ReloadArbiter(Arbiter):
    """The supervisor with one worker, stop-first restarts and a failure page."""

    multiprocess = False  # one worker at a time: the old one stops before the new starts

    def __init__(
        self,
        argv: Sequence[str],
        config: Config,
        held: Sequence[Held],
        *,
        binds: Sequence[str],
        roots: Sequence[Path] = (),
    ) -> None:
        super().__init__(argv, config, held, binds=binds)
        self.count = 1
        self.heartbeat_s = 0.0
        self.roots = tuple(roots)
        self.failed = False  # the last worker ended by itself: wait for a change
        self.page: FailurePage | None = None
        self.tails: dict[int, OutputTail] = {}

    def _log_start(self) -> None:
        """reload.py has said what it holds and watches."""

    def _log_stopped(self) -> None:
        """Nothing to add when a development server stops."""

    def on_restart(self) -> None:
        """A watched file changed (posted by reload.py's watcher thread)."""
        self.close_page()
        self.failed = False
        self.generation += 1  # the running worker is now old: _manage stops it first

    def _manage(self, now: float) -> None:
        self._enforce_deadlines(now)
        if self.stopping:
            return
        for worker in list(self.workers.values()):
            if worker.state != STOPPING and worker.generation != self.generation:
                self._stop(worker, "reloading")
        if not self.workers and not self.failed:
            self.close_page()  # the new worker takes every connection from now on
            self._spawn(now)

    def _popen_options(self) -> dict[str, Any]:
        # stderr passes through us so that a failure can be shown on the page.
        return {"stderr": subprocess.PIPE}

    def _spawn(self, now: float) -> WorkerProcess | None:
        worker = super()._spawn(now)
        if worker is not None and worker.proc.stderr is not None:
            self.tails[worker.pid] = OutputTail(worker.proc.stderr)
        return worker

    def _exited(self, worker: WorkerProcess, code: int) -> None:
        tail = self.tails.pop(worker.pid, None)
        if worker.state == STOPPING or self.stopping:
            return
        if tail is not None:
            tail.join(2.0)  # the rest of its traceback, unless a grandchild still holds stderr
        failure = describe(tail.text() if tail else "", code, self.roots)
        log.warning(
            "reload: worker %d failed: %s; answering 500 until a file changes",
            worker.pid,
            failure.summary,
        )
        self.failed = True
        if self.held:
            self.page = FailurePage([kept.sock for kept in self.held], failure.page())
            self.page.start()

    def close_page(self) -> None:
        if self.page is not None:
            self.page.close()
            self.page = None

    def _begin_stop(self, signum: int) -> None:
        self.close_page()
        super()._begin_stop(signum)

    def on_interrupt(self) -> None:
        """Ctrl-C: the worker stops at once under --reload (server.interrupt), as runserver."""
        if self.stopping:
            self.on_quit()
            return
        self._begin_stop(signal.SIGINT)

    def on_quit(self) -> None:
        self.close_page()
        super().on_quit()

    def on_more(self) -> None:
        log.info("SIGTTIN: --reload runs one worker")

    def on_fewer(self) -> None:
        log.info("SIGTTOU: --reload runs one worker")
