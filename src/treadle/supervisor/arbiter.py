"""The supervisor: holds the listening sockets and keeps N worker processes serving on them.

Composition layer, run by ``treadle serve --workers N`` in the parent process. It binds
every listener once, spawns fresh worker processes (subprocess, never a fork of a process
with threads) that adopt the sockets, and acts on what they report (supervisor/child.py)
and on signals (supervisor/signals.py): it replaces workers that die, recycles them, and
reloads or stops them without dropping a request. One thread, one select loop; it never
imports the app, never runs a reactor and never accepts a connection.
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
from treadle.supervisor import logfiles
from treadle.supervisor.child import ENV, EXIT_APP_LOAD, Job
from treadle.supervisor.process import READY, STARTING, STOPPING, WorkerProcess
from treadle.supervisor.signals import ACTIONS
from treadle.supervisor.sockets import Held, hold, release

log = logging.getLogger("treadle")

EXIT_CANNOT_LISTEN = 1
EXIT_USAGE = 2  # as cli.py: a bind the supervisor cannot hold, or a worker's config error
BOOT_ERRORS = (EXIT_USAGE, EXIT_APP_LOAD)  # a worker that fails so will fail again: stop
STABLE_S = 5.0  # a worker that dies this soon after it got ready counts towards the backoff
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 30.0
KILL_GRACE_S = 5.0  # past --graceful-timeout, before a stopping worker is killed
QUICK_STOP_S = 2.0  # a quick stop (second Ctrl-C, SIGQUIT) kills what is left after this
DUMP_GRACE_S = 1.0  # between asking a stuck worker for its stacks and killing it
MAX_WAIT_S = 1.0


def describe_status(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def become_subreaper() -> None:
    """Linux: orphans of our workers (a daemonized grandchild) become our children, so we
    reap them as PID 1 would, whether or not we are PID 1 (PR_SET_CHILD_SUBREAPER)."""
    if sys.platform != "linux":
        return
    pr_set_child_subreaper = 36  # <linux/prctl.h>
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1)


class Arbiter:
    """The supervisor's state and loop. Main thread only, except ``post``.

    This is the production policy: N workers, new ones ready before old ones stop. The dev
    reloader (reload_worker.py) is a subclass with one worker, stop-first restarts and a
    failure page: the loop, the sockets and the child protocol are the same.
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
        self.reload_from: int | None = None  # the generation a SIGHUP replaces, until it is done
        self.stopping = False
        self.quick = False
        self.exit_status = 0
        self.failures = 0  # workers in a row that died young
        self.next_spawn_at = 0.0
        self.announced: tuple[int, ...] = ()
        self.signals: list[int] = []
        self.events: list[str] = []  # posted by other threads (the reloader's file watcher)
        self._wake_write = -1
        self.selector = selectors.DefaultSelector()

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
        log.info(
            "supervisor %d: starting %d workers on %s",
            os.getpid(),
            self.count,
            " ".join(kept.address for kept in self.held),
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

    def _exited(self, worker: WorkerProcess, code: int) -> None:
        now = self.clock()
        if worker.state == STOPPING or self.stopping:
            log.info("worker %d stopped (%s)", worker.pid, describe_status(code))
            return
        serving = any(other.state == READY for other in self.workers.values())
        if worker.state == STARTING and code in BOOT_ERRORS:
            if serving and self.reload_from is not None and worker.generation == self.generation:
                log.error(
                    "reload failed: worker %d could not load the app (see above); "
                    "the old workers keep serving",
                    worker.pid,
                )
                self.generation, self.reload_from = self.reload_from, None
                return
            if not serving:
                log.error(
                    "worker %d could not start (%s; its error is above): stopping",
                    worker.pid,
                    describe_status(code),
                )
                self.exit_status = code
                self._begin_stop(signal.SIGTERM)
                return
        lived_s = now - worker.spawned_at
        # Young: it never got ready, or died soon after (start-up time depends on the app).
        young = worker.ready_at is None or now - worker.ready_at < STABLE_S
        self.failures = self.failures + 1 if young else 0
        delay_s = 0.0
        if self.failures:
            delay_s = min(BACKOFF_FIRST_S * 2 ** (self.failures - 1), BACKOFF_MAX_S)
            self.next_spawn_at = max(self.next_spawn_at, now + delay_s)
        log.warning(
            "worker %d died (%s) after %.1f s; replacing it%s",
            worker.pid,
            describe_status(code),
            lived_s,
            f" in {delay_s:.1f} s ({self.failures} died young in a row)" if self.failures else "",
        )

    # -- keeping N workers ------------------------------------------------------------

    def _fresh(self) -> list[WorkerProcess]:
        """Workers of the current code that are not leaving: the ones we keep."""
        return [
            worker
            for worker in self.workers.values()
            if worker.state != STOPPING and worker.generation == self.generation
            and not worker.retiring
        ]  # fmt: skip

    def _missing(self) -> int:
        return max(0, self.count - len(self._fresh()))

    def _enforce_deadlines(self, now: float) -> None:
        for worker in list(self.workers.values()):
            if worker.kill_at is not None and now >= worker.kill_at:
                log.warning("worker %d did not stop in time: killing it", worker.pid)
                worker.kill_at = None
                self._signal(worker, signal.SIGKILL)

    def _manage(self, now: float) -> None:
        self._enforce_deadlines(now)
        if self.stopping:
            return
        self._check_heartbeats(now)
        fresh = sorted(self._fresh(), key=lambda w: (w.state == READY, w.spawned_at))
        while len(fresh) > self.count:  # SIGTTOU: a starting one first, else the oldest
            self._stop(fresh.pop(0), "one worker fewer")
        while len(fresh) < self.count and now >= self.next_spawn_at:
            spawned = self._spawn(now)
            if spawned is None:
                break
            fresh.append(spawned)
        stale = sorted(
            (w for w in self.workers.values() if w.state != STOPPING and w not in fresh),
            key=lambda w: w.spawned_at,
        )
        ready = [w for w in fresh if w.state == READY]
        if len(ready) == self.count:
            self._announce(ready)
        serving = len(ready) + sum(1 for w in stale if w.state == READY)
        for worker in stale:
            if worker.state == STARTING:
                self._stop(worker, "replaced before it was ready")
            elif serving > self.count:  # its replacement is ready: capacity stays at N
                self._stop(worker, "recycled" if worker.retiring else "replaced by a new worker")
                serving -= 1

    def _announce(self, ready: list[WorkerProcess]) -> None:
        pids = tuple(sorted(worker.pid for worker in ready))
        if pids == self.announced:
            return
        if self.reload_from is not None:
            log.info("reload done: the new workers are ready")
            self.reload_from = None
        self.announced = pids
        log.info(
            "%d workers ready at %s (supervisor pid %d; worker pids %s)",
            len(pids),
            " ".join(ready[0].addresses) or " ".join(kept.address for kept in self.held),
            os.getpid(),
            ", ".join(map(str, pids)),
        )

    def _check_heartbeats(self, now: float) -> None:
        if not self.heartbeat_s:
            return
        for worker in list(self.workers.values()):
            if worker.state != READY or now - worker.last_seen < self.heartbeat_s:
                continue
            log.error(
                "worker %d: no heartbeat for %.1f s (its reactor is stuck): dumping its "
                "threads' stacks, then killing it",
                worker.pid,
                now - worker.last_seen,
            )
            for method, path, elapsed_s in worker.inflight:
                log.error(
                    "worker %d: in flight at its last heartbeat: %s %s (%.1f s)",
                    worker.pid,
                    method,
                    path,
                    elapsed_s + (now - worker.last_seen),
                )
            self._signal(worker, signal.SIGUSR2)  # faulthandler in the worker (child.py)
            worker.state = STOPPING
            worker.kill_at = now + DUMP_GRACE_S

    def _spawn(self, now: float) -> WorkerProcess | None:
        settings = self.config.workers
        max_requests = settings.max_requests
        if max_requests:
            max_requests += random.randint(0, settings.max_requests_jitter)
        read_end, write_end = os.pipe()
        job = Job(
            parent=os.getpid(),
            binds=self.binds,
            channel=write_end,
            multiprocess=self.multiprocess,
            max_requests=max_requests,
        )
        try:
            # Own process group: a terminal's Ctrl-C reaches only us, and we forward it once.
            proc = subprocess.Popen(
                self.argv,
                env={**os.environ, ENV: job.to_env()},
                pass_fds=[*(kept.sock.fileno() for kept in self.held), write_end],
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

    def _begin_stop(self, signum: int) -> None:
        """Stop accepting, then let every worker drain (reactor thread of no one: main)."""
        self.stopping = True
        # Our copies of the sockets close now; each worker closes its own as it drains,
        # and the kernel refuses new connections once the last copy is gone.
        for kept in self.held:
            kept.sock.close()
        for worker in list(self.workers.values()):
            if worker.state == STOPPING and signum == signal.SIGTERM:
                continue  # already draining (a reload or a recycle)
            self._stop(worker, "shutting down", signum)

    # -- signals (supervisor/signals.py names them) --------------------------------

    def on_stop(self) -> None:
        if not self.stopping:
            log.info("SIGTERM: stopping gracefully (up to %.0f s)", self.graceful_s)
            self._begin_stop(signal.SIGTERM)

    def on_interrupt(self) -> None:
        if self.stopping:
            self.on_quit()
            return
        log.info(
            "SIGINT: stopping gracefully (up to %.0f s); Ctrl-C again to stop now", self.graceful_s
        )
        self._begin_stop(signal.SIGINT)

    def on_quit(self) -> None:
        if self.quick:
            return
        log.info("stopping now: abandoning requests in flight")
        self.quick = True
        self.stopping = True
        for kept in self.held:
            kept.sock.close()
        deadline = self.clock() + QUICK_STOP_S
        for worker in self.workers.values():
            # A draining worker's second SIGINT abandons its requests (server.interrupt).
            self._signal(worker, signal.SIGINT)
            worker.state = STOPPING
            worker.kill_at = min(worker.kill_at or deadline, deadline)

    def on_reload(self) -> None:
        if self.stopping:
            return
        log.info(
            "SIGHUP: starting %d new workers; the old ones drain once they are ready", self.count
        )
        self.reload_from = self.generation if self.reload_from is None else self.reload_from
        self.generation += 1

    def on_more(self) -> None:
        self.count += 1
        log.info("SIGTTIN: %d workers", self.count)

    def on_fewer(self) -> None:
        if self.count <= 1:
            log.info("SIGTTOU: staying at 1 worker")
            return
        self.count -= 1
        log.info("SIGTTOU: %d workers", self.count)

    def on_reopen(self) -> None:
        reopened = logfiles.reopen()
        log.info("SIGUSR1: reopened %d log files; telling the workers", reopened)
        for worker in self.workers.values():
            self._signal(worker, signal.SIGUSR1)

    def on_reap(self) -> None:
        """SIGCHLD: the loop reaps on every turn; the signal only wakes it."""


def run_workers(argv: Sequence[str], config: Config) -> int:
    """Hold every --bind, then supervise workers running ``argv``. Returns the exit status."""
    held: list[Held] = []
    try:
        for bind in config.listen.bind:
            kept = hold(bind, config.listen.backlog)
            if kept is None:
                log.error(
                    "--workers: %s cannot be shared by workers yet; use tcp:, tcp6: or unix: "
                    "binds (a proxy in front can terminate TLS)",
                    bind,
                )
                release(held)
                return EXIT_USAGE
            held.append(kept)
    except OSError as error:
        log.error("could not start: cannot listen: %s", error)
        release(held)
        return EXIT_CANNOT_LISTEN
    try:
        return Arbiter(argv, config, held).run()
    finally:
        release(held)
