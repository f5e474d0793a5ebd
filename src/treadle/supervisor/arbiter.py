"""The supervisor: holds the listening sockets and keeps N worker processes serving on them.

Composition layer, run by ``treadle serve --workers N`` in the parent process. It binds
every listener once, spawns fresh worker processes (subprocess, never a fork of a process
with threads) that adopt the sockets, and acts on what they report (supervisor/child.py)
and on signals (supervisor/signals.py): it replaces workers that die, recycles them, and
reloads or stops them without dropping a request. The loop itself is supervisor/loop.py;
this module holds the rules. It never imports the app, never runs a reactor and never
accepts a connection.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Sequence

from treadle import listen, sdnotify
from treadle.config import Config
from treadle.errors import ConfigError
from treadle.supervisor import logfiles, pidfile, privileges, steering
from treadle.supervisor.child import EXIT_APP_LOAD
from treadle.supervisor.loop import (
    BACKOFF_FIRST_S,
    BACKOFF_MAX_S,
    Loop,
    describe_status,
)
from treadle.supervisor.process import READY, STARTING, STOPPING, WorkerProcess
from treadle.supervisor.sockets import Held, hold, hold_again, release

log = logging.getLogger("treadle")

EXIT_CANNOT_LISTEN = 1
EXIT_USAGE = 2  # as cli.py: a bind the supervisor cannot hold, or a worker's config error
BOOT_ERRORS = (EXIT_USAGE, EXIT_APP_LOAD)  # a worker that fails so will fail again: stop
STABLE_S = 5.0  # a worker that dies this soon after it got ready counts towards the backoff
QUICK_STOP_S = 2.0  # a quick stop (second Ctrl-C, SIGQUIT) kills what is left after this
DUMP_GRACE_S = 1.0  # between asking a stuck worker for its stacks and killing it
# Past --request-timeout plus --hard-cancel-after, the hard cancel has had this long to work.
HOPELESS_GRACE_S = 1.0
# A worker silent this long (three missed beats) gets no new connections until it reports.
STEER_AWAY_S = 3.0
# SIGTTOU: a leaving worker gets no new connections for this long before it stops, so it
# accepts what was queued on its socket; the socket then closes without resetting any.
LEAVE_GRACE_S = 0.5


class Arbiter(Loop):
    """The production rules: N workers; a new one is ready before an old one stops.

    The dev reloader (reload_worker.py) is a subclass with one worker, stop-first restarts
    and a failure page: the loop, the sockets and the child protocol are the same.
    """

    def __init__(
        self,
        argv: Sequence[str],
        config: Config,
        held: Sequence[Held],
        *,
        binds: Sequence[str] | None = None,
    ) -> None:
        super().__init__(argv, config, held, binds=binds)
        # Worker slots: each has its own SO_REUSEPORT socket per TCP bind (the shared
        # unix:/systemd: sockets appear in every slot). A slot's sockets outlive its
        # workers: a replacement accepts what queued while the slot had none.
        self.slots: dict[int, list[Held]] = {0: list(held)}
        # The kernel's order of each address's slot sockets, and the slots it last steered
        # new connections to (None: its own hash over all of them).
        self.group = steering.Group()
        self.group.joined(0)
        self.steered: tuple[int, ...] | None = None
        self.live: tuple[int, ...] = ()  # slots whose worker accepted at the last turn
        # SIGTTOU: slots whose worker is leaving: their sockets, closed at the given time.
        self.departing: dict[int, tuple[list[Held], float]] = {}
        self.start_timeout_s = config.workers.worker_start_timeout_s
        self.reload_from: int | None = None  # the generation a SIGHUP replaces, until it is done
        # The newest generation ever started. A failed reload goes back to the old
        # generation, and the next SIGHUP must not reuse the failed one's number: a worker
        # of the failed code still starting would count as the new code's and fail it too.
        self.newest_generation = self.generation
        self.quick = False
        self.announced: tuple[int, ...] = ()
        timeouts = config.timeouts
        self.hopeless_s: float | None = None  # a request older than this ignores cancellation
        if timeouts.request_timeout_s is not None and timeouts.hard_cancel_after_s is not None:
            self.hopeless_s = (
                timeouts.request_timeout_s + timeouts.hard_cancel_after_s + HOPELESS_GRACE_S
            )

    def _exited(self, worker: WorkerProcess, code: int) -> None:
        now = self.clock()
        if worker.failed_start and not self.stopping:
            worker.state = STARTING  # killed for not getting ready: a failed start, below
        if worker.state == STOPPING or self.stopping:
            log.info("worker %d stopped (%s)", worker.pid, describe_status(code))
            if worker.hung and not self.stopping:
                self._hand_queue_over(worker)
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
        self._hand_queue_over(worker)
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
            and not worker.retiring and worker.leave_at is None
        ]  # fmt: skip

    def _missing(self) -> int:
        return max(0, self.count - len(self._fresh()))

    # -- worker slots: which sockets each worker accepts on ------------------------------

    def _handed(self, slot: int | None) -> tuple[tuple[str, ...], list[Held]]:
        sockets = self.slots[0 if slot is None else slot]
        return tuple(kept.child_bind for kept in sockets), sockets

    def _free_slot(self) -> int:
        """A slot no worker of the current code holds; a new slot (new sockets) if none."""
        taken = {worker.slot for worker in self._fresh()}
        for slot in sorted(self.slots):
            if slot not in taken:
                return slot
        slot = max(self.slots, default=-1) + 1
        first = self.slots[min(self.slots)] if self.slots else self.held
        backlog = self.config.listen.backlog
        made: list[Held] = []
        try:
            for kept in first:
                made.append(hold_again(kept, backlog))
        except OSError:
            release(kept for kept in made if kept.reuse_port)
            raise
        self.slots[slot] = made
        self.group.joined(slot)
        return slot

    def _retire_slot(self, slot: int | None) -> None:
        """TTOU: close the slot's own sockets (its worker drains on its own copies).

        Connections already queued on them are reset by the kernel unless
        net.ipv4.tcp_migrate_req is 1 (Linux 5.14+), which moves them to a sibling."""
        sockets = self.slots.pop(0 if slot is None else slot, [])
        for kept in sockets:
            if kept.reuse_port:
                kept.sock.close()
        self.group.left(0 if slot is None else slot)

    def _leave(self, worker: WorkerProcess, now: float) -> None:
        """SIGTTOU: steer new connections away from ``worker``'s slot at once, stop it a
        moment later, once it has accepted what was queued there, and close the slot."""
        slot = worker.slot
        if worker.state != READY or slot is None or slot not in self.slots:
            self._stop(worker, "one worker fewer")
            self._retire_slot(slot)
            return
        worker.leave_at = now + LEAVE_GRACE_S
        self.departing[slot] = (self.slots.pop(slot), worker.leave_at)
        self._steer(now)

    def _finish_departures(self, now: float) -> None:
        for worker in list(self.workers.values()):
            if worker.leave_at is not None and worker.state != STOPPING and now >= worker.leave_at:
                self._stop(worker, "one worker fewer")
        for slot, (sockets, close_at) in list(self.departing.items()):
            if now >= close_at:
                del self.departing[slot]
                for kept in sockets:
                    if kept.reuse_port:
                        kept.sock.close()
                self.group.left(slot)
                self.steered = ()  # the group's order changed: steer again

    def _steer(self, now: float) -> None:
        """Point new TCP connections at the slots whose worker accepts (steering.py).

        A slot whose worker died, is starting or has missed three beats gets none until it
        has a worker that reports; its queue keeps what it had, for that worker. With every
        slot (or none) accepting, the kernel's own hash spreads them."""
        accepting = {
            worker.slot
            for worker in self.workers.values()
            if worker.state == READY and now - worker.last_seen < STEER_AWAY_S
        }
        live = tuple(slot for slot in sorted(self.slots) if slot in accepting)
        away = [slot for slot in self.live if slot not in live and slot in self.slots]
        if away and self.announced:
            log.info(
                "new connections skip worker slot %s until a worker accepts there again",
                ", ".join(map(str, away)),
            )
        self.live = live
        # The kernel's own hash when every socket in the group may take connections.
        everyone = len(live) == len(self.slots) and not self.departing
        chosen = None if not live or everyone else live
        if chosen == self.steered:
            return
        indices = [] if chosen is None else self.group.indices(chosen)
        first = self.slots[min(self.slots)]
        if all(steering.steer(kept.sock, indices) for kept in first if kept.reuse_port):
            self.steered = chosen

    def _hand_queue_over(self, worker: WorkerProcess) -> None:
        """A worker died: with net.ipv4.tcp_migrate_req, the connections waiting on its
        slot's sockets move to the other workers' now, instead of waiting for its
        replacement. The slot gets fresh sockets on the same address for that replacement.
        """
        slot = worker.slot
        if slot is None or slot not in self.slots or not steering.migration_on():
            return
        if any(other.slot == slot and other.state != STOPPING for other in self.workers.values()):
            return  # another worker still accepts there
        if not any(live != slot for live in self.live):
            return  # no other worker accepts: the queue waits for the replacement
        old = self.slots[slot]
        addresses = [kept.sock.getsockname() if kept.reuse_port else None for kept in old]
        # Closed first: the kernel moves the queue to a socket still open in the group (by
        # its hash), and the slot's fresh socket must not be one of them yet.
        for kept in old:
            if kept.reuse_port:
                kept.sock.close()
        self.group.left(slot)
        self.steered = ()  # the group's order changed: steer again
        try:
            backlog = self.config.listen.backlog
            pairs = zip(old, addresses, strict=True)
            self.slots[slot] = [hold_again(kept, backlog, where) for kept, where in pairs]
        except OSError as error:
            log.warning("cannot listen for worker %d's replacement: %s", worker.pid, error)
            self._retire_slot(slot)
            return
        self.group.joined(slot)

    def all_sockets(self) -> list[Held]:
        """Every socket held, each once."""
        seen: dict[int, Held] = {id(kept): kept for kept in self.held}
        for sockets in [*self.slots.values(), *(held for held, _ in self.departing.values())]:
            seen.update((id(kept), kept) for kept in sockets)
        return list(seen.values())

    def _spawn_in_free_slot(self, now: float) -> WorkerProcess | None:
        try:
            slot = self._free_slot()
        except OSError as error:
            self.failures += 1
            delay_s = min(BACKOFF_FIRST_S * 2 ** (self.failures - 1), BACKOFF_MAX_S)
            self.next_spawn_at = now + delay_s
            log.error("cannot listen for one more worker: %s; trying again in %.1f s",
                      error, delay_s)  # fmt: skip
            return None
        return self._spawn_in(now, slot)

    def _manage(self, now: float) -> None:
        self._enforce_deadlines(now)
        if self.stopping:
            return
        self._check_heartbeats(now)
        self._check_start_timeouts(now)
        self._check_hopeless_requests()
        self._steer(now)
        fresh = sorted(self._fresh(), key=lambda w: (w.state == READY, w.spawned_at))
        while len(fresh) > self.count:  # SIGTTOU: a starting one first, else the oldest
            self._leave(fresh.pop(0), now)
        self._finish_departures(now)
        while len(fresh) < self.count and now >= self.next_spawn_at:
            spawned = self._spawn_in_free_slot(now)
            if spawned is None:
                break
            fresh.append(spawned)
        stale = sorted(
            (
                w
                for w in self.workers.values()
                if w.state != STOPPING and w not in fresh and w.leave_at is None
            ),
            key=lambda w: w.spawned_at,
        )
        ready = [w for w in fresh if w.state == READY]
        if len(ready) == self.count:
            self._announce(ready)
        serving = len(ready) + sum(1 for w in stale if w.state == READY)
        # A slot's old worker stops once a new one accepts on the slot's sockets, so no
        # slot's queue waits for a worker that is still starting.
        covered = {w.slot for w in ready}
        for worker in stale:
            if worker.state == STARTING:
                self._stop(worker, "replaced before it was ready")
            elif serving > self.count and (worker.slot in covered or worker.slot not in self.slots):
                # Its replacement is ready: capacity stays at N.
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
        sdnotify.ready(f"{len(pids)} workers ready")

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
            worker.hung = True
            worker.state = STOPPING
            worker.kill_at = now + DUMP_GRACE_S

    def _check_start_timeouts(self, now: float) -> None:
        if not self.start_timeout_s:
            return
        for worker in list(self.workers.values()):
            if worker.state != STARTING or now - worker.spawned_at < self.start_timeout_s:
                continue
            log.error(
                "worker %d did not report ready within %.1f s (--worker-start-timeout): "
                "dumping its threads' stacks, then killing it",
                worker.pid,
                self.start_timeout_s,
            )
            self._signal(worker, signal.SIGUSR2)  # faulthandler, registered by child.adopt
            worker.failed_start = True
            worker.state = STOPPING
            worker.kill_at = now + DUMP_GRACE_S

    def _check_hopeless_requests(self) -> None:
        """A request that outlived its cancel and hard cancel holds a thread for good: the
        worker is replaced. It is not killed: its replacement starts first, then it drains,
        so its other requests finish (it is killed only past --graceful-timeout)."""
        if self.hopeless_s is None:
            return
        for worker in self.workers.values():
            if worker.state != READY or worker.retiring:
                continue
            hopeless = [entry for entry in worker.inflight if entry[2] > self.hopeless_s]
            for method, path, elapsed_s in hopeless:
                log.error(
                    "worker %d: %s %s has run %.1f s and ignores cancellation (past "
                    "--request-timeout and --hard-cancel-after): replacing the worker; "
                    "its threads' stacks follow",
                    worker.pid,
                    method,
                    path,
                    elapsed_s,
                )
            if hopeless:
                self._signal(worker, signal.SIGUSR2)  # faulthandler: stacks, no exit
                worker.retiring = True

    def _begin_stop(self, signum: int) -> None:
        """Stop accepting, then let every worker drain (or abandon, for SIGINT)."""
        self.stopping = True
        sdnotify.stopping(f"stopping {len(self.workers)} workers")
        # Our copies of the sockets close now; each worker closes its own as it drains,
        # and the kernel refuses new connections once the last copy is gone.
        for kept in self.all_sockets():
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
        sdnotify.stopping(f"stopping {len(self.workers)} workers now")
        for kept in self.all_sockets():
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
        sdnotify.reloading(f"reloading: starting {self.count} new workers")
        self.reload_from = self.generation if self.reload_from is None else self.reload_from
        self.newest_generation += 1
        self.generation = self.newest_generation

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


def run_workers(argv: Sequence[str], config: Config, *, listen_on: bool = True) -> int:
    """Hold every --bind, then supervise workers running ``argv``. Returns the exit status.

    The pid file is claimed before binding and written once bound; --user/--group are
    dropped after binding, before the first worker is spawned. ``listen_on=False``: hold
    no socket at all (``treadle mongrel2``'s workers connect to Mongrel2 themselves).
    """
    process = config.process
    binds = config.listen.bind if listen_on else ()
    held: list[Held] = []
    try:
        privileges.set_umask(process.umask)
        if process.pid_file:
            pidfile.check(process.pid_file)
        privileges.resolve(process.user, process.group)  # a typo fails before binding
        # A bad certificate or key file: one line and status 2 here, not one per worker.
        listen.check_certificates(binds, config.tls)
    except ConfigError as error:
        log.error("could not start: %s", error)
        return EXIT_USAGE
    try:
        for bind in binds:
            kept = hold(
                bind,
                config.listen.backlog,
                privileges.socket_mode(process.umask),
                # One socket per worker slot (decisions.md: accept balance). Only Linux
                # spreads connections over SO_REUSEPORT sockets; elsewhere they share one.
                reuse_port=sys.platform == "linux",
                with_tls=True,  # each worker wraps TLS around its adopted socket
            )
            if kept is None:
                log.error(
                    "--workers: %s cannot be shared by workers; use tcp:, tcp6:, ssl:, unix: "
                    "or systemd: binds",
                    bind,
                )
                release(held)
                return EXIT_USAGE
            if listen.scheme(bind, config.tls) == "https":  # --certfile makes tcp binds TLS
                kept.address = kept.address.replace("http://", "https://", 1)
            held.append(kept)
    except OSError as error:
        log.error("could not start: cannot listen: %s", error)
        release(held)
        return EXIT_CANNOT_LISTEN
    try:
        if process.pid_file:
            pidfile.write(process.pid_file)
        privileges.drop(process.user, process.group)
    except (ConfigError, OSError) as error:
        log.error("could not start: %s", error)
        release(held)
        if process.pid_file:
            pidfile.remove(process.pid_file)
        return EXIT_USAGE
    arbiter = Arbiter(argv, config, held)
    try:
        return arbiter.run()
    finally:
        release(arbiter.all_sockets())
        if process.pid_file:
            pidfile.remove(process.pid_file)
