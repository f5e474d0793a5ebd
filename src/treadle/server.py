"""The composition root: Config + app -> pool, container, dispatcher, listeners.

Composition layer: it may import anything and nothing imports it but the entry
points (cli, service, treadle.serve). It builds objects and wires them; it holds
no protocol logic. Threads start in ``start()`` (after any daemonizing fork),
never at construction.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.error import ReactorNotRunning

from treadle import blocking, listen, twisted_internals
from treadle.accesslog import AccessLog
from treadle.config import Config
from treadle.deadlines import Deadlines
from treadle.dispatch import Dispatcher
from treadle.errors import ConfigError
from treadle.hardcancel import HardCanceller
from treadle.http import forwarded
from treadle.http.exchange import Exchange
from treadle.http.h2 import H2Limits
from treadle.http.h2_protocol import H2Support
from treadle.http.protocol import HTTPFactory
from treadle.pool import ThreadPool
from treadle.stats import Stats
from treadle.timing import RequestRecord
from treadle.wsgi import body as bodies
from treadle.wsgi.bridge import Outbox
from treadle.wsgi.container import WSGIApp, WSGIContainer

log = logging.getLogger("treadle")

EXIT_USAGE = 2  # as cli.py: the command line or its files are wrong
# At the end of a stop, how long closed connections may take to send what they still hold.
FLUSH_TIMEOUT_S = 5.0


def static_mounts(specs: Sequence[str]) -> list[Any]:
    """``/url=dir`` settings -> static.Mount values."""
    from treadle.static import Mount

    mounts = []
    for spec in specs:
        url, _, directory = spec.partition("=")
        mounts.append(Mount(url.rstrip("/") + "/", Path(directory).resolve()))
    return mounts


def static_files(mounts: Sequence[Any], config: Config, script_name: str) -> Any:
    """The mounts plus --static as one static.StaticFiles, or None when there are none."""
    all_mounts = list(mounts) + static_mounts(config.app.static)
    if not all_mounts:
        return None
    from treadle.static import StaticFiles

    # Files up to 128 KiB are served from memory in one write.
    return StaticFiles(all_mounts, script_name=script_name, inline_max_bytes=128 * 1024)


class PoolSide:
    """What every transport's server shares: the pool, the outbox its threads answer
    through, deadlines, statistics and the access log; started and stopped with the
    reactor's hooks. A subclass adds where requests come from and ``_check_drained``."""

    def __init__(self, config: Config, reactor: Any) -> None:
        self.config = config
        self.reactor = reactor
        self.stats = Stats()
        # A LeanEPollReactor (reactor.py) drains the outbox itself before it sleeps, so
        # app threads wake it only when it is asleep; any other reactor is always woken.
        self.lean_reactor = hasattr(reactor, "add_drain")
        self.outbox = Outbox(reactor.callFromThread, reactor if self.lean_reactor else None)
        # After this poll's events, before the reactor blocks: treadle's reactor runs such
        # calls without a timer; Twisted's own gets a callLater(0).
        self.call_soon: Callable[[Callable[[], None]], Any] = getattr(
            reactor, "call_after_events", None
        ) or (lambda f: reactor.callLater(0, f))
        self.pool = ThreadPool(config.pool.threads, config.pool.max_queue, schedule=self.call_soon)
        self.deadlines = Deadlines(reactor)
        self.access_log = (
            AccessLog(config.logging.access_log_format) if config.logging.access_log else None
        )
        # A supervised worker counts its requests here (--max-requests: supervisor/child.py).
        self.on_request_finished: Callable[[Exchange], None] | None = None

    def proxied(self, dispatch: Callable[[Any], None]) -> Callable[[Any], None]:
        """``dispatch`` behind --forwarded-allow-ips: proxy headers from trusted peers set
        each exchange's peer and scheme before it is routed (the access log and the environ
        both see them); with the setting empty, nothing is added per request."""
        proxy = self.config.proxy
        headers = forwarded.from_settings(proxy.forwarded_allow_ips, proxy.forwarded_headers)
        return dispatch if headers is None else headers.wrap(dispatch)

    def _finished(self, exchange: Exchange) -> None:
        """Reactor thread: a request ended (answered, aborted, or its client left)."""
        if exchange.record.request_id:  # set for every request handed to the pool
            self.stats.finish(exchange.record)
        if self.access_log is not None:
            self.access_log(exchange)
        if self.on_request_finished is not None:
            self.on_request_finished(exchange)
        self._check_drained()

    def running(self) -> list[Any]:
        """Reactor thread: the requests whose app thread runs now (RequestRecord)."""
        raise NotImplementedError

    def _check_drained(self) -> None:
        raise NotImplementedError

    def _start_pool_side(self) -> None:
        """Reactor thread, at start: threads, the outbox drain, treadle.wait, deadlines."""
        twisted_internals.warn_missing()  # a Twisted without a speed-up says so now, once
        self.pool.start()
        if self.lean_reactor:
            self.reactor.add_drain(self.outbox.drain_pending)
            pool = self.pool
            self.reactor.set_idle_spin(self.config.pool.idle_spin_us / 1e6, lambda: pool.all_idle)
        blocking.install(self.reactor)
        self.deadlines.start()

    def _stop_pool_side(self) -> None:
        """Reactor thread, at the end of a stop: undo _start_pool_side (threads end later)."""
        self.deadlines.stop()
        blocking.uninstall()
        if self.lean_reactor:
            self.reactor.remove_drain(self.outbox.drain_pending)
            self.reactor.set_idle_spin(0.0)


class Server(PoolSide):
    """One process's HTTP server: listeners, connections, the pool."""

    def __init__(
        self,
        app: WSGIApp,
        config: Config,
        reactor: Any,
        *,
        mounts: Sequence[Any] = (),
    ) -> None:
        super().__init__(config, reactor)
        self.container = WSGIContainer(
            app,
            call_from_thread=self.outbox,
            script_name=config.app.script_name,
            multiprocess=config.app.multiprocess,
            hard_cancel=config.timeouts.hard_cancel_after_s is not None,
        )
        static = static_files(mounts, config, config.app.script_name)
        self.dispatcher = Dispatcher(
            submit=self._submit, script_name=config.app.script_name, static=static
        )
        dispatch = self.proxied(self.dispatcher)
        self.factory = HTTPFactory(
            config,
            deadlines=self.deadlines,
            dispatch=dispatch,
            bodies=bodies,
            records=RequestRecord,
            on_finished=self._finished,
            max_connections=max_connections(config),
            accepting=self._set_accepting,
            h2=H2Support(
                H2Limits(
                    config.http2.h2_max_concurrent_streams, config.http2.h2_max_header_list_size
                ),
                h2c=config.http2.h2c,
            ),
        )
        self.factory.noisy = False
        self.factory.on_quiet = self._check_drained
        if config.timeouts.hard_cancel_after_s is not None:
            canceller = HardCanceller(config.timeouts.hard_cancel_after_s)
            running = self.container.running
            self.deadlines.on_tick.append(
                lambda _now: canceller.check(running, time.perf_counter())
            )
        # Endpoints are made now, before the reactor runs: a bad bind or an unreadable TLS
        # key or certificate fails at start with one line (ConfigError), not in the loop.
        backlog = config.listen.backlog
        tls = config.tls
        self.endpoints = [
            (listen.endpoint(reactor, bind, backlog, tls), listen.scheme(bind, tls))
            for bind in config.listen.bind
        ]
        if config.proxy.proxy_protocol:
            from treadle.proxied import ProxiedFactory

            header_timeout_s = config.timeouts.header_timeout_s

            def read_proxy_header(factory: Any) -> Any:
                return ProxiedFactory(factory, clock=reactor, timeout_s=header_timeout_s)

            self.endpoints = [
                (listen.wrapped_beneath_tls(endpoint, read_proxy_header), scheme)
                for endpoint, scheme in self.endpoints
            ]
        self.ports: list[Any] = []
        self.addresses: list[str] = []
        self._stopping = False
        self._drained: defer.Deferred[None] | None = None
        self._gone: defer.Deferred[None] | None = None  # waits for the last connection to close
        self._interrupted = False  # the stop came from Ctrl-C (SIGINT)
        self._stop_now = False  # abandon requests in flight instead of waiting for them

    def _set_accepting(self, accepting: bool) -> None:
        """Reactor thread: pause or resume accepting on every port (--max-connections).

        A paused port leaves new clients in the kernel's backlog, as waitress and gunicorn
        do at their limits; they are accepted once a connection closes.
        """
        for port in self.ports:
            if accepting:
                port.startReading()
            else:
                port.stopReading()

    def _submit(self, exchange: Exchange) -> bool:
        """Reactor thread: hand a request to the pool (False when the queue is full)."""
        self.stats.begin(exchange.record)
        return self.pool.submit(self.container.job(exchange))

    def running(self) -> list[Any]:
        return list(self.container.running)  # a copy: app threads change the set

    def busy(self) -> bool:
        """A request is in flight, or an app's close() still runs after its response."""
        return not self.factory.quiet() or bool(self.container.closing)

    def _check_drained(self) -> None:
        """Reactor thread: during a graceful stop, continue once nothing is in flight."""
        if self._drained is not None and not self.busy():
            drained, self._drained = self._drained, None
            drained.callback(None)
        if self._gone is not None and not self.factory.connections:
            gone, self._gone = self._gone, None
            gone.callback(None)

    async def _connections_gone(self, timeout_s: float) -> None:
        """Reactor thread, stopping: wait until every closed connection has gone.

        close() asks a transport to send what it holds, then close. A TLS transport still
        holds the last response (its records reach the socket on a later reactor turn), and
        the reactor's shutdown drops what is unsent: a client of a stopping worker saw its
        connection closed without the response it had been given.
        """
        if not self.factory.connections:
            return
        gone = self._gone = defer.Deferred()
        timer = self.reactor.callLater(timeout_s, self._check_gone_timeout)
        await gone
        if timer.active():
            timer.cancel()

    def _check_gone_timeout(self) -> None:
        """A client that takes nothing does not hold the exit up past FLUSH_TIMEOUT_S."""
        if self._gone is not None:
            gone, self._gone = self._gone, None
            gone.callback(None)

    async def start(self) -> list[str]:
        """Start threads and listeners; returns the addresses (reactor thread)."""
        self._start_pool_side()
        for endpoint, scheme in self.endpoints:
            port = await endpoint.listen(self.factory)
            self.ports.append(port)
            self.addresses.append(listen.describe(port, scheme))
        log.info(
            "Listening at: %s (pid %d, %d threads)",
            " ".join(self.addresses),
            os.getpid(),
            self.config.pool.threads,
        )
        return self.addresses

    async def stop(self) -> None:
        """Graceful stop: no new connections, finish in-flight requests, then close."""
        if self._stopping:
            return
        self._stopping = True
        await defer.gatherResults([listen.stop_listening(port) for port in self.ports])
        self.ports = []
        # SIGTERM (a supervisor, systemd, an orchestrator; a balancer may be in front): every
        # idle connection may still bring one request. Ctrl-C: a person waits; idle ones go.
        self.factory.drain(every_idle=not self._interrupted)
        self.container.on_closed = self._check_drained
        if self.busy():
            timeout = self.config.timeouts.graceful_timeout_s
            drained = self._drained = defer.Deferred()
            if self._stop_now:
                self._give_up("Ctrl-C with --reload")
            else:
                # Without the hint a developer waits out the whole timeout (30 s by default).
                hint = "; Ctrl-C again to stop now" if self._interrupted else ""
                log.info("waiting up to %.0f s for in-flight requests%s", timeout, hint)
            timer = self.reactor.callLater(timeout, self._give_up)
            await drained
            if timer.active():
                timer.cancel()
        for channel in list(self.factory.connections):
            channel.close()
        await self._connections_gone(FLUSH_TIMEOUT_S)
        self._stop_pool_side()

    def tls_endpoints(self) -> list[Any]:
        """The listeners whose certificates can be re-read (tls.TLSServerEndpoint)."""
        return [endpoint for endpoint, _ in self.endpoints if hasattr(endpoint, "reload")]

    def reload_certificates(self) -> None:
        """Reactor thread, on SIGHUP: every TLS listener reads its certificate files again.

        New handshakes get the new certificates; open connections keep theirs. If a file is
        bad, that listener keeps its old certificates and the error is logged.
        """
        failed = 0
        for endpoint in self.tls_endpoints():
            try:
                endpoint.reload()
            except ConfigError as error:
                failed += 1
                log.error("SIGHUP: certificates not re-read, the old ones stay: %s", error)
        if not failed:
            log.info("SIGHUP: TLS certificates re-read")

    def interrupt(self) -> None:
        """Reactor thread, on SIGINT (Ctrl-C). With --reload the server stops at once, as
        runserver does; otherwise the first starts the graceful stop and a second stops now."""
        if self._stopping:
            self._stop_now = True
            self._give_up("second Ctrl-C")
            return
        self._interrupted = True
        self._stop_now = self.config.reload.reload
        # A SIGTERM may have stopped the reactor already; its shutdown then runs our stop().
        with contextlib.suppress(ReactorNotRunning):
            self.reactor.stop()

    def _give_up(self, reason: str = "graceful timeout") -> None:
        if self._drained is not None:
            log.warning("%s: abandoning requests still running", reason)
            drained, self._drained = self._drained, None
            for channel in list(self.factory.connections):
                current = channel.current
                if current is None:
                    continue
                record = current.record
                record.cancel.set("server shutting down")
                if not record.started_at:
                    # Never started (queued, or its body still arriving): it can be told to
                    # retry elsewhere instead of seeing a bare EOF. A thread that takes it
                    # now drops it, its token being set.
                    current.send_error(
                        503,
                        "Service Unavailable: the server is shutting down",
                        [("Retry-After", self.dispatcher.retry_after)],
                    )
            drained.callback(None)


DEFAULT_MAX_CONNECTIONS = 10_000


def max_connections(config: Config) -> int:
    """--max-connections, or 10000 capped at half the open-file limit (0 picks this).

    Half: a connection may also hold a file it sends or a spooled body. Raising the limit
    (raise_open_file_limit) therefore never leaves the server without a bound.
    """
    if config.listen.max_connections:
        return config.listen.max_connections
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, ValueError, OSError):
        return DEFAULT_MAX_CONNECTIONS
    if soft == resource.RLIM_INFINITY:
        return DEFAULT_MAX_CONNECTIONS
    return max(1, min(DEFAULT_MAX_CONNECTIONS, soft // 2))


def raise_open_file_limit() -> None:
    """Each connection is a descriptor: lift the soft limit to the hard one (often 1024 -> more)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ImportError, ValueError, OSError) as error:
        log.debug("could not raise the open-file limit: %s", error)


def tune_gc(young_threshold: int) -> None:
    """Main thread, once the app is loaded: fit the cyclic collector to a server's life.

    The app, its framework and treadle are loaded: freezing moves those objects out of
    the collector's way, so later collections scan only what requests allocate. The
    young generation's threshold is raised (unless 0) because objects of requests in
    flight are alive: collecting every 700 allocations during a burst only promotes
    them, and the older generations' runs then scan them again.
    """
    gc.freeze()
    if young_threshold:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(young_threshold, middle, old)


def catch_sigint(handler: Callable[[], None]) -> None:
    """Main thread, once the reactor runs: SIGINT calls ``handler`` in the reactor thread.

    Twisted's own handler only stops the reactor, and a second Ctrl-C then did nothing
    while the graceful stop waited for requests in flight.
    """
    try:
        signal.signal(signal.SIGINT, lambda _signum, _frame: handler())
    except ValueError:  # not the main thread: whoever runs the reactor owns the signals
        log.debug("SIGINT left to the program that runs the reactor")


def catch_signal(signum: int, handler: Callable[[], None]) -> None:
    """Main thread: ``signum`` calls ``handler`` (which must only hand over to the reactor)."""
    try:
        signal.signal(signum, lambda _signum, _frame: handler())
    except ValueError:  # not the main thread: whoever runs the reactor owns the signals
        log.debug("signal %d left to the program that runs the reactor", signum)


def run(
    app: WSGIApp,
    config: Config,
    *,
    mounts: Sequence[Any] = (),
    reactor: Any = None,
    on_started: Callable[[Server], None] | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit status. Main thread.

    ``on_started(server)`` runs in the reactor thread once every listener is up (a
    supervised worker reports ready there).
    """
    raise_open_file_limit()
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    try:
        server = Server(app, config, reactor, mounts=mounts)
    except ConfigError as error:
        log.error("could not start: %s", error)
        return EXIT_USAGE

    def on_begin() -> None:
        if server.tls_endpoints():
            # One process: SIGHUP re-reads the certificates (the supervisor's SIGHUP replaces
            # its workers instead, and they read them afresh); see docs/tls.md.
            catch_signal(signal.SIGHUP, lambda: reactor.callFromThread(server.reload_certificates))

    return run_reactor(reactor, server, config, on_started, on_begin)


def run_reactor(
    reactor: Any,
    server: Any,
    config: Config,
    on_started: Callable[[Any], None] | None,
    on_begin: Callable[[], None] | None = None,
) -> int:
    """Main thread: run the reactor with ``server`` started in it and stopped before its
    shutdown (SIGTERM, or SIGINT through ``server.interrupt``); the exit status.

    ``server`` has ``start()`` and ``stop()`` coroutines, ``interrupt()`` and a ``pool``;
    ``on_begin()`` runs in the reactor thread first (more signal handlers).
    """
    status = {"code": 0}

    def started_failed(failure: Any) -> None:
        log.error("could not start: %s", failure.getErrorMessage())
        status["code"] = 1
        reactor.stop()

    def begin() -> None:
        catch_sigint(lambda: reactor.callFromThread(server.interrupt))
        if on_begin is not None:
            on_begin()
        started = defer.Deferred.fromCoroutine(server.start())
        if on_started is not None:
            started.addCallback(lambda _result: on_started(server))
        started.addErrback(started_failed)

    reactor.callWhenRunning(begin)
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: defer.Deferred.fromCoroutine(server.stop())
    )
    tune_gc(config.pool.gc_threshold)
    reactor.run()
    server.pool.stop(timeout_s=1.0)
    return status["code"]
