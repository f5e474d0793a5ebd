"""What a process started by a supervisor (or the dev reloader) does to take its place.

Composition layer, used by the entry points in the child. The parent describes the child's
job in one environment variable: the sockets to adopt (``fd:N`` binds; none for ``treadle
mongrel2``, whose workers connect to Mongrel2 themselves), whether several workers serve
(``wsgi.multiprocess``), the recycling count, and a pipe to report on. The child reports,
as JSON lines on that pipe: ``ready`` (with its addresses) once it takes requests, a
``beat`` from its reactor every second, and ``retire`` once it has served its
--max-requests. It never binds a socket and never reads anything from the parent.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import json
import logging
import os
import select
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

from treadle.config import Config

log = logging.getLogger("treadle")

ENV = "TREADLE_SUPERVISOR"
EXIT_APP_LOAD = 3  # gunicorn's WORKER_BOOT_ERROR: the supervisor stops instead of retrying
HEARTBEAT_S = 1.0
MAX_REPORTED_REQUESTS = 8  # in a beat: with MAX_REPORTED_PATH, fits one atomic pipe write
MAX_REPORTED_PATH = 200


@dataclass(frozen=True)
class Job:
    """The parent's description of this child (the JSON in ``TREADLE_SUPERVISOR``)."""

    parent: int
    binds: tuple[str, ...]
    channel: int | None = None  # write end of the report pipe (None: report nothing)
    multiprocess: bool = False
    max_requests: int = 0  # 0: never retire

    def to_env(self) -> str:
        return json.dumps(
            {
                "parent": self.parent,
                "binds": list(self.binds),
                "channel": self.channel,
                "multiprocess": self.multiprocess,
                "max_requests": self.max_requests,
            }
        )


def job() -> Job | None:
    """This process's job, or None when no supervisor started it."""
    text = os.environ.get(ENV)
    if text is None:
        return None
    data = json.loads(text)
    return Job(
        parent=int(data["parent"]),
        binds=tuple(data["binds"]),
        channel=data.get("channel"),
        multiprocess=bool(data.get("multiprocess")),
        max_requests=int(data.get("max_requests") or 0),
    )


def is_child() -> bool:
    """True inside a supervised child: its sockets come from the parent."""
    return ENV in os.environ


def is_worker() -> bool:
    """True inside a child that reports to a supervisor (a worker or the dev reload child)."""
    current = job()
    return current is not None and current.channel is not None


def adopt(config: Config) -> Config:
    """``config`` with the parent's sockets as its binds; the process dies with the parent.

    The adopted binds replace whatever flags and environment said, because the parent
    already bound exactly those addresses. A job with no binds (``treadle mongrel2``'s
    workers, which listen on nothing) leaves the binds alone.
    """
    current = job()
    if current is None:
        return config
    die_with_parent(current.parent)
    if current.channel is not None:
        # Until on_started handles it: the supervisor's SIGUSR1 must not end a starting worker.
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        # A worker stuck while it starts (an import that hangs) writes every thread's stack
        # when the supervisor gives up on it (--worker-start-timeout).
        faulthandler.register(signal.SIGUSR2, all_threads=True)
    changes: dict[str, Any] = {"bind": current.binds} if current.binds else {}
    if current.multiprocess:
        changes["multiprocess"] = True
    return config.replace(**changes)


def die_with_parent(parent: int) -> None:
    """Linux: SIGTERM when the parent dies (even by SIGKILL), so no orphan keeps the port."""
    if sys.platform != "linux":
        return
    pr_set_pdeathsig = 1  # <linux/prctl.h>
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


class Reporter:
    """Writes this worker's reports to the supervisor's pipe. Reactor thread only.

    The pipe is non-blocking: a supervisor that stopped reading must not stop the reactor,
    so a report that does not fit is dropped (the next beat says the same).
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)

    def send(self, **message: Any) -> None:
        data = (json.dumps(message) + "\n").encode()
        if len(data) > select.PIPE_BUF:  # larger writes may be split: the reader needs whole lines
            log.debug("report too long for one pipe write: dropped")
            return
        try:
            os.write(self.fd, data)
        except BlockingIOError:
            log.debug("supervisor pipe full: report dropped")
        except OSError as error:  # the supervisor is gone; PDEATHSIG stops us soon
            log.debug("cannot report to the supervisor: %s", error)


def on_started(server: Any) -> None:
    """Reactor thread, once ``server`` takes requests: report ready, then beat and count
    requests. ``server`` is a server.PoolSide (HTTP's Server, or a Mongrel2Server once
    Mongrel2 has subscribed) with ``addresses`` to report."""
    current = job()
    if current is None or current.channel is None:
        return
    reporter = Reporter(current.channel)
    reactor = server.reactor
    # A stuck reactor cannot run Python code: faulthandler's C handler writes every thread's
    # stack to stderr when the supervisor sends SIGUSR2 before it kills us.
    faulthandler.register(signal.SIGUSR2, all_threads=True)

    def beat() -> None:
        # What runs now, for the supervisor to log if this is the last beat before we hang.
        reporter.send(beat=reactor.seconds(), inflight=in_flight(server))
        reactor.callLater(HEARTBEAT_S, beat)

    reactor.callLater(HEARTBEAT_S, beat)
    if current.max_requests:
        _count_requests(server, current.max_requests, reporter)
    _reopen_logs_on_sigusr1(reactor)
    reporter.send(ready=list(server.addresses), pid=os.getpid())


def in_flight(server: Any) -> list[list[Any]]:
    """The oldest requests in flight as [method, path, seconds]: small enough for one report.

    Reactor thread. Requests still open on a connection, and requests whose app thread still
    runs after they were answered or given up (a 504 after --request-timeout, a client gone).
    """
    now = time.perf_counter()  # the clock of RequestRecord and Stats
    found: dict[int, list[Any]] = {}
    for request in server.stats.inflight():
        found[request["request_id"]] = [request["method"], request["path"], request["elapsed_s"]]
    for record in server.running():
        if record.started_at:
            elapsed_s = now - record.started_at
            found.setdefault(record.request_id, [record.method, record.path, elapsed_s])
    oldest = sorted(found.values(), key=lambda entry: -entry[2])[:MAX_REPORTED_REQUESTS]
    reported = []
    for method, path, elapsed_s in oldest:
        path = str(path)
        if len(path) > MAX_REPORTED_PATH:
            path = path[:MAX_REPORTED_PATH] + "..."
        reported.append([str(method)[:16], path, round(elapsed_s, 1)])
    return reported


def _count_requests(server: Any, limit: int, reporter: Reporter) -> None:
    """Ask to be replaced once ``limit`` requests have finished; serve on until SIGTERM.

    The supervisor starts the replacement and stops this worker only once it is ready,
    so capacity never drops while workers recycle.
    """
    served = 0

    def counted(_exchange: Any) -> None:
        nonlocal served
        served += 1
        if served == limit:
            log.info("served %d requests (--max-requests): asking to be replaced", served)
            reporter.send(retire=served)

    server.on_request_finished = counted


def _reopen_logs_on_sigusr1(reactor: Any) -> None:
    from treadle.supervisor.logfiles import reopen

    def reopen_and_say() -> None:
        log.info("SIGUSR1: reopened %d log files", reopen())

    def on_signal(_signum: int, _frame: Any) -> None:
        reactor.callFromThread(reopen_and_say)

    with contextlib.suppress(ValueError):  # not the main thread: the host owns signals
        signal.signal(signal.SIGUSR1, on_signal)
