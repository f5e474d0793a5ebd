"""treadle as a Twisted service, for programs that run their own MultiService.

Composition layer. The pool's threads start in startService, never at import or
construction, so a service built before twistd daemonizes survives the fork
(Twisted #4347). stopService drains in-flight requests, then stops the threads.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet import defer

from treadle.config import Config
from treadle.server import Server


class TreadleService(Service):
    """``TreadleService(app, threads=8, bind=["tcp:8080"])`` or with a Config."""

    def __init__(
        self, app: Any, config: Config | None = None, *, reactor: Any = None, **settings: Any
    ) -> None:
        self.name = "treadle"  # type: ignore[assignment]
        self.app = app
        self.config = config.replace(**settings) if config else Config.from_settings(settings)
        self._reactor = reactor
        self.server: Server | None = None
        self.ready: defer.Deferred[list[str]] = defer.Deferred()

    def startService(self) -> None:
        super().startService()
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self.server = Server(self.app, self.config, reactor)
        started = defer.Deferred.fromCoroutine(self.server.start())
        started.chainDeferred(self.ready)

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        server = self.server
        if server is None:
            return defer.succeed(None)

        def stopped(result: Any) -> Any:
            server.pool.stop(timeout_s=0.5)
            return result

        return defer.Deferred.fromCoroutine(server.stop()).addBoth(stopped)


def service(app: Any, **settings: Any) -> TreadleService:
    """Build a TreadleService to add to a MultiService."""
    return TreadleService(app, **settings)
