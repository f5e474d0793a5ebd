"""The supervisor's loop: signals, worker reports and exits in, spawns and signals out.

Composition layer, the base of the Arbiter (arbiter.py: the production rules) and of the
dev reloader's ReloadArbiter. One thread and one select loop over each worker's report
pipe and a wake-up pipe written by signal handlers (``signal.set_wakeup_fd``) and other
threads (``post``); every turn reaps exited children, acts on what arrived and calls the
policy's ``_manage``. It decides nothing itself, never imports the app, never runs a
reactor and never accepts a connection.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from treadle.config import Config
from treadle.sdnotify import ENV as NOTIFY_SOCKET
from treadle.supervisor.child import ENV, Job
from treadle.supervisor.process import READY, STARTING, STOPPING, WorkerProcess
from treadle.supervisor.signals import ACTIONS
from treadle.supervisor.sockets import Held

log = logging.getLogger("treadle")

BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 30.0
KILL_GRACE_S = 5.0  # past --graceful-timeout, before a stopping worker is killed
MAX_WAIT_S = 1.0


def describe_status(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


SYSTEMD_ONLY = frozenset({NOTIFY_SOCKET, "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"})


def _without(env: Any, names: frozenset[str]) -> dict[str, str]:
    return {key: value for key, value in env.items() if key not in names}


def become_subreaper() -> None:
    """Linux: orphans of our workers (a daemonized grandchild) become our children, so we
    reap them as PID 1 would, whether or not we are PID 1 (PR_SET_CHILD_SUBREAPER)."""
    if sys.platform != "linux":
        return
    pr_set_child_subreaper = 36  # <linux/prctl.h>
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1)


class Loop:
    """The supervisor's state and loop. Main thread only, except ``post``.

    Subclasses say what to do: ``_manage`` (after every event), ``_exited`` (a worker was
    reaped), ``_missing`` (workers still to start) and an ``on_<action>`` per signal in
    supervisor/signals.py.
    """

    multiprocess = True  # wsgi.multiprocess: during a reload or recycle two workers serve

    def __init__(
        self,
        argv: Sequence[str],
        config: Config,
        held: Sequence[Held],
        *,
        binds: Sequence[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.argv = list(argv)
        self.config = config
        self.held = list(held)
        # The children's binds: the held sockets by fd, plus any the children open themselves.
        self.binds = tuple(binds) if binds is not None else tuple(h.child_bind for h in held)
        self.clock = clock
        self.count = config.workers.workers
        self.graceful_s = config.timeouts.graceful_timeout_s
        self.heartbeat_s = config.workers.heartbeat_timeout_s
        self.workers: dict[int, WorkerProcess] = {}
        self.generation = 0
        self.stopping = False
        self.exit_status = 0
        self.failures = 0  # workers in a row that died young (or could not be spawned)
        self.next_spawn_at = 0.0
        self.signals: list[int] = []
        self.events: list[str] = []  # posted by other threads (the reloader's file watcher)
        self._wake_write = -1
        self.selector = selectors.DefaultSelector()

    def _manage(self, now: float) -> None:
        raise NotImplementedError

    def _exited(self, worker: WorkerProcess, code: int) -> None:
        raise NotImplementedError

    def _missing(self) -> int:
        return 0

    # -- the loop -------------------------------------------------------------------

    def run(self) -> int:
        """Spawn the workers and supervise them until they have all stopped."""
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        self._wake_write = wake_write
        previous_wakeup = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in ACTIONS}
        self.selector.register(wake_read, selectors.EVENT_READ, None)
        become_subreaper()
        try:
            self._log_start()
            while True:
                self._reap()
                while self.signals:
                    self._dispatch(self.signals.pop(0))
                while self.events:
                    getattr(self, "on_" + self.events.pop(0))()
                now = self.clock()
                self._manage(now)
                if self.stopping and not self.workers:
                    break
                for key, _ in self.selector.select(self._wait_s(now)):
                    if key.data is None:
                        with contextlib.suppress(BlockingIOError):
                            while os.read(wake_read, 512):
                                pass
                    else:
                        self._read(key.data)
        finally:
            for worker in list(self.workers.values()):  # only after an error in this loop
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
                worker.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_wakeup)
            self.selector.close()
            self._wake_write = -1
            os.close(wake_read)
            os.close(wake_write)
        self._log_stopped()
        return self.exit_status

    def _log_start(self) -> None:
        held = " ".join(kept.address for kept in self.held)
        log.info(
            "supervisor %d: starting %d workers%s",
            os.getpid(),
            self.count,
            f" on {held}" if held else "",  # none: the workers connect (treadle mongrel2)
        )

    def _log_stopped(self) -> None:
        log.info("supervisor %d: stopped", os.getpid())

    def post(self, event: str) -> None:
        """Any thread: have the loop call ``on_<event>()`` on its next turn."""
        self.events.append(event)
        with contextlib.suppress(OSError):  # full (it will wake anyway) or already closed
            os.write(self._wake_write, b"\0")

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.signals.append(signum)  # acted on by the loop: the wake-up fd interrupts select

    def _dispatch(self, signum: int) -> None:
        getattr(self, "on_" + ACTIONS[signum])()

    def _wait_s(self, now: float) -> float:
        times = [now + MAX_WAIT_S]
        if self._missing() and not self.stopping:
            times.append(self.next_spawn_at)
        for worker in self.workers.values():
            if worker.kill_at is not None:
                times.append(worker.kill_at)
            if worker.state == READY and self.heartbeat_s:
                times.append(worker.last_seen + self.heartbeat_s)
        return max(0.0, min(times) - now)

    # -- what the workers say ---------------------------------------------------------

    def _read(self, worker: WorkerProcess) -> None:
        messages = worker.read()
        if messages is None:  # it closed the pipe: it exited (reaped on SIGCHLD)
            self.selector.unregister(worker.channel)
            worker.close()
            return
        worker.last_seen = self.clock()
        for message in messages:
            if "ready" in message and worker.state == STARTING:
                worker.state = READY
                worker.ready_at = worker.last_seen
                worker.addresses = [str(address) for address in message["ready"]]
            if "inflight" in message and isinstance(message["inflight"], list):
                worker.inflight = message["inflight"]
            if "retire" in message and not worker.retiring:
                worker.retiring = True
                log.info(
                    "worker %d served %s requests: starting its replacement",
                    worker.pid,
                    message["retire"],
                )

    def _reap(self) -> None:
        """Collect every child that exited (as PID 1, orphans we adopted too)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            worker = self.workers.pop(pid, None)
            if worker is None:
                log.debug("reaped process %d (%s)", pid, describe_status(code))
                continue
            worker.proc.returncode = code  # reaped here: Popen must not wait for it again
            if worker.channel >= 0:
                self.selector.unregister(worker.channel)
                worker.close()
            self._exited(worker, code)

    def _enforce_deadlines(self, now: float) -> None:
        for worker in list(self.workers.values()):
            if worker.kill_at is not None and now >= worker.kill_at:
                log.warning("worker %d did not stop in time: killing it", worker.pid)
                worker.kill_at = None
                self._signal(worker, signal.SIGKILL)

    def _handed(self, slot: int | None) -> tuple[tuple[str, ...], list[Held]]:
        """The binds and sockets a worker in ``slot`` gets: here, all of them."""
        return self.binds, self.held

    def _spawn(self, now: float) -> WorkerProcess | None:
        return self._spawn_in(now, None)

    def _spawn_in(self, now: float, slot: int | None) -> WorkerProcess | None:
        """Start a worker on ``slot``'s sockets (``_handed``)."""
        settings = self.config.workers
        max_requests = settings.max_requests
        if max_requests:
            max_requests += random.randint(0, settings.max_requests_jitter)
        binds, handed = self._handed(slot)
        read_end, write_end = os.pipe()
        job = Job(
            parent=os.getpid(),
            binds=binds,
            channel=write_end,
            multiprocess=self.multiprocess,
            max_requests=max_requests,
        )
        try:
            # Own process group: a terminal's Ctrl-C reaches only us, and we forward it once.
            proc = subprocess.Popen(
                self.argv,
                # Only the supervisor talks to systemd (sd_notify: NotifyAccess=main); the
                # sockets systemd passed reach the workers as fd: binds.
                env={**_without(os.environ, SYSTEMD_ONLY), ENV: job.to_env()},
                pass_fds=[*(kept.sock.fileno() for kept in handed), write_end],
                process_group=0,
                **self._popen_options(),
            )
        except OSError as error:
            os.close(read_end)
            self.failures += 1
            delay_s = min(BACKOFF_FIRST_S * 2 ** (self.failures - 1), BACKOFF_MAX_S)
            self.next_spawn_at = now + delay_s
            log.error("cannot start a worker: %s; trying again in %.1f s", error, delay_s)
            return None
        finally:
            os.close(write_end)
        os.set_blocking(read_end, False)
        worker = WorkerProcess(proc, read_end, self.generation, now)
        worker.slot = slot
        self.workers[proc.pid] = worker
        self.selector.register(read_end, selectors.EVENT_READ, worker)
        log.debug("worker %d starting", proc.pid)
        return worker

    def _popen_options(self) -> dict[str, Any]:
        """More subprocess.Popen arguments for a worker (the reloader pipes its stderr)."""
        return {}

    def _stop(self, worker: WorkerProcess, reason: str, signum: int = signal.SIGTERM) -> None:
        log.info("stopping worker %d (%s)", worker.pid, reason)
        worker.state = STOPPING
        worker.kill_at = self.clock() + self.graceful_s + KILL_GRACE_S
        self._signal(worker, signum)

    def _signal(self, worker: WorkerProcess, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # it exited; SIGCHLD is on its way
            os.kill(worker.pid, signum)
