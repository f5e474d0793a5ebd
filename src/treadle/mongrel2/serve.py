"""The composition root of ``treadle mongrel2``: Config + app -> pool, container, handler.

Composition layer. It builds the same pool, dispatcher, WSGI container, statistics and
access log as server.py, but the requests come from Mongrel2 over ZeroMQ
(mongrel2/transport.py, mongrel2/channel.py) instead of from listening sockets. It
holds no protocol logic; threads start in ``start()``, never at construction.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.error import ReactorNotRunning

from treadle.config import Config
from treadle.dispatch import Dispatcher
from treadle.hardcancel import HardCanceller
from treadle.http.exchange import Exchange
from treadle.mongrel2.channel import Handler
from treadle.mongrel2.command import Endpoints
from treadle.mongrel2.transport import Mongrel2Sockets
from treadle.server import PoolSide, run_reactor, static_files
from treadle.timing import RequestRecord
from treadle.wsgi import body as bodies
from treadle.wsgi.container import WSGIApp, WSGIContainer

log = logging.getLogger("treadle")

MAX_MOUNTS = 64  # distinct route prefixes given their own SCRIPT_NAME (admins write routes)


class Mongrel2Server(PoolSide):
    """One handler process: Mongrel2's sockets, the pool, the app."""

    def __init__(
        self,
        app: WSGIApp,
        config: Config,
        reactor: Any,
        endpoints: Endpoints,
        *,
        mounts: Sequence[Any] = (),
    ) -> None:
        super().__init__(config, reactor)
        self.app = app
        self.endpoints = endpoints
        # SCRIPT_NAME comes from each request's route: one container per route prefix.
        self.containers: dict[str, WSGIContainer] = {}
        static = static_files(mounts, config, "")
        self.dispatcher = Dispatcher(submit=self._submit, script_name="", static=static)
        call_soon = self.call_soon
        self.handler = Handler(
            send=self._send,
            call_soon=call_soon,
            deadlines=self.deadlines,
            # --forwarded-allow-ips: a proxy before Mongrel2 may say the scheme and host;
            # Mongrel2 replaces X-Forwarded-For itself, so the address stays its.
            dispatch=self.proxied(self.dispatcher),
            bodies=bodies,
            records=RequestRecord,
            limits=config.limits,
            timeouts=config.timeouts,
            on_finished=self._finished,
            upload_dir=endpoints.upload_dir,
            upload_timeout_s=endpoints.upload_timeout_s,
        )
        self.handler.on_quiet = self._check_drained
        self.sockets = Mongrel2Sockets(
            reactor,
            send_spec=endpoints.send_spec,
            recv_spec=endpoints.recv_spec,
            send_ident=endpoints.send_ident,
            on_message=self.handler.receive,
            broker_spec=endpoints.broker_spec,
            credits=config.pool.threads,
            call_soon=call_soon,
        )
        self.sockets.on_released = self._check_drained
        if endpoints.broker_spec:
            sockets = self.sockets
            self.handler.on_request_done = lambda sender, conn_id, count: sockets.to_broker(
                b"DONE", sender, conn_id, b"%d" % count
            )
            self.deadlines.on_tick.append(self._heartbeat)
        if config.timeouts.hard_cancel_after_s is not None:
            canceller = HardCanceller(config.timeouts.hard_cancel_after_s)

            def check_hard_cancels(_now: float) -> None:
                for container in list(self.containers.values()):
                    canceller.check(container.running, time.perf_counter())

            self.deadlines.on_tick.append(check_hard_cancels)
        self._stopping = False
        self._drained: defer.Deferred[None] | None = None
        self._subscribed: defer.Deferred[None] | None = None
        self._interrupted = False
        # What a supervisor's log shows for this worker (supervisor/child.py reports it).
        self.addresses = [endpoints.broker_spec or endpoints.send_spec]
        self.container("")  # the common case, made before any thread starts

    def container(self, script_name: str) -> WSGIContainer:
        """Reactor thread: the container whose SCRIPT_NAME is ``script_name``."""
        container = self.containers.get(script_name)
        if container is None:
            container = self.containers[script_name] = WSGIContainer(
                self.app,
                call_from_thread=self.outbox,
                script_name=script_name,
                multiprocess=self.config.app.multiprocess,
                hard_cancel=self.config.timeouts.hard_cancel_after_s is not None,
            )
            container.on_closed = self._check_drained if self._stopping else None
        return container

    def _heartbeat(self, _now: float) -> None:
        free = max(self.config.pool.threads - self.handler.in_hand, 0)
        self.sockets.to_broker(b"HEARTBEAT", b"%d" % free)

    def _send(self, messages: list[bytes]) -> None:
        self.sockets.send(messages)

    def _submit(self, exchange: Exchange) -> bool:
        """Reactor thread: the route's prefix becomes SCRIPT_NAME, then the pool."""
        script_name = exchange.connection.script_name  # type: ignore[attr-defined]
        if (
            script_name
            and len(self.containers) >= MAX_MOUNTS
            and script_name not in self.containers
        ):
            script_name = ""
        if script_name:
            exchange.path_info = exchange.path_info[len(script_name) :]
        self.stats.begin(exchange.record)
        return self.pool.submit(self.container(script_name).job(exchange))

    def running(self) -> list[RequestRecord]:
        """Reactor thread: the requests whose app thread runs (a copy: threads change it)."""
        return [record for c in list(self.containers.values()) for record in list(c.running)]

    def busy(self) -> bool:
        return (
            not self.handler.quiet()
            or any(c.closing for c in self.containers.values())
            or self.sockets.awaiting_release  # behind a broker: until it says nothing follows
        )

    def _check_drained(self) -> None:
        if self._drained is not None and not self.busy():
            drained, self._drained = self._drained, None
            drained.callback(None)

    async def start(self) -> None:
        """Reactor thread: threads, then the sockets; returns once Mongrel2 has subscribed
        and requests are taken (a supervised worker reports ready only then, so a reload
        stops the old workers only once the new ones are handling)."""
        self._start_pool_side()
        self.sockets.on_connected = self._connected
        subscribed = self._subscribed = defer.Deferred()
        self.sockets.start()
        # A safety net once a tick: a ZeroMQ descriptor's edge consumed by another call
        # would otherwise leave a request waiting until the next message arrives.
        self.deadlines.on_tick.append(lambda _now: self.sockets.read())
        log.info(
            "Waiting for Mongrel2 to subscribe at %s (pid %d, %d threads)",
            self.endpoints.recv_spec,
            os.getpid(),
            self.config.pool.threads,
        )
        await subscribed

    def _connected(self) -> None:
        log.info(
            "Handling for Mongrel2: requests from %s, responses to %s (pid %d)",
            self.endpoints.broker_spec or self.endpoints.send_spec,
            self.endpoints.recv_spec,
            os.getpid(),
        )
        subscribed, self._subscribed = self._subscribed, None
        if subscribed is not None:
            subscribed.callback(None)

    async def stop(self) -> None:
        """Graceful stop: take no new requests, finish those in hand, then close."""
        if self._stopping:
            return
        self._stopping = True
        self.sockets.stop_receiving()
        for client in list(self.handler.clients.values()):
            # An upload still arriving: its done notice comes through the socket just
            # disconnected, so this handler will not see it. Its request ends now (503 if
            # nothing was answered) instead of holding the stop until the graceful timeout.
            client.stop_upload("the server is shutting down")
        for container in self.containers.values():
            container.on_closed = self._check_drained
        if self.busy():
            timeout = self.config.timeouts.graceful_timeout_s
            drained = self._drained = defer.Deferred()
            hint = "; Ctrl-C again to stop now" if self._interrupted else ""
            log.info("waiting up to %.0f s for in-flight requests%s", timeout, hint)
            timer = self.reactor.callLater(timeout, self._give_up)
            await drained
            if timer.active():
                timer.cancel()
        for client in list(self.handler.clients.values()):
            client.stop_upload("the server is shutting down")  # announced while draining
            client.flush()
        self.sockets.close()
        self._stop_pool_side()

    def interrupt(self) -> None:
        """Reactor thread, on SIGINT: the first starts the graceful stop, a second ends it."""
        if self._stopping:
            self._give_up("second Ctrl-C")
            return
        self._interrupted = True
        with contextlib.suppress(ReactorNotRunning):
            self.reactor.stop()

    def _give_up(self, reason: str = "graceful timeout") -> None:
        """Requests still in hand: a queued one gets 503, a running one is cut off (its
        client sees the connection close, never a response made to look whole)."""
        if self._drained is None:
            return
        log.warning("%s: abandoning requests still running", reason)
        drained, self._drained = self._drained, None
        for client in list(self.handler.clients.values()):
            current = client.current
            if current is None:
                continue
            record = current.record
            record.cancel.set("server shutting down")
            if not record.started_at and current.plan is None:
                current.send_error(503, "Service Unavailable: the server is shutting down")
            else:
                current.abort("server shutting down")
        drained.callback(None)


def run(
    app: WSGIApp,
    config: Config,
    endpoints: Endpoints,
    *,
    mounts: Sequence[Any] = (),
    reactor: Any = None,
    on_started: Callable[[Mongrel2Server], None] | None = None,
) -> int:
    """Serve Mongrel2's requests until SIGTERM/SIGINT; the exit status. Main thread."""
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    server = Mongrel2Server(app, config, reactor, endpoints, mounts=mounts)
    return run_reactor(reactor, server, config, on_started)
