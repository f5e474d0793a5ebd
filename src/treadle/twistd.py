"""``twistd treadle`` and ``twist treadle``: command-line options -> Config -> TreadleService.

Composition layer, loaded by the plugin in src/twisted/plugins/treadle_plugin.py. The
options are generated from config.py's setting definitions, so they never drift from
``treadle serve``. It must not start threads, bind sockets or touch the reactor: twistd
may daemonize (fork) after makeService, and TreadleService starts the pool and binds in
startService, after the fork (Twisted #4347). Logging belongs to twistd (--logfile,
--syslog): treadle's log lines are forwarded to Twisted's log instead of stderr.
"""

from __future__ import annotations

import atexit
import logging
import sys
from typing import Any

from twisted.logger import Logger, LogLevel
from twisted.python import usage

from treadle import logs
from treadle.config import Config, flag_of, iter_settings, parse_value, settings_from_env
from treadle.errors import AppLoadError, ConfigError
from treadle.service import TreadleService
from treadle.settings_doc import is_switch, shown_default

# Settings that belong to ``treadle serve``'s own process model or to twistd's options:
# twistd runs one process and has its own --logfile, --pidfile, --uid, --gid and --umask.
# gc_threshold is applied by ``treadle serve`` alone, and idle_spin_us needs treadle's own
# reactor, while twistd installs the one its --reactor names.
NOT_UNDER_TWISTD_GROUPS = frozenset({"reload", "workers", "process"})
NOT_UNDER_TWISTD = frozenset(
    {
        "multiprocess",
        "log_file",
        "pid_file",
        "user",
        "group",
        "umask",
        "gc_threshold",
        "idle_spin_us",
    }
)


def offered(group: str, name: str) -> bool:
    """Is this setting an option of ``twistd treadle``?"""
    return group not in NOT_UNDER_TWISTD_GROUPS and name not in NOT_UNDER_TWISTD


def _setting_handler(name: str, spec: Any) -> Any:
    """An ``opt_*`` method that parses one value and records it under the setting's name."""
    repeat = spec.metadata["repeat"]

    def handler(self: Options, text: str) -> None:
        try:
            value = parse_value(spec, text)
        except ConfigError as error:
            raise usage.UsageError(f"{flag_of(spec)}: {error}") from None
        if repeat:
            self.settings[name] = (*self.settings.get(name, ()), value)
        else:
            self.settings[name] = value

    handler.__doc__ = f"{spec.metadata['help']} (default: {shown_default(spec)})"
    return handler


def _switch_handlers(name: str, spec: Any) -> dict[str, Any]:
    def on(self: Options) -> None:
        self.settings[name] = True

    def off(self: Options) -> None:
        self.settings[name] = False

    on.__doc__ = f"{spec.metadata['help']} (default: {shown_default(spec)})"
    off.__doc__ = f"Turn off {flag_of(spec)}."
    attr = flag_of(spec)[2:].replace("-", "_")
    return {f"opt_{attr}": on, f"opt_no_{attr}": off}


def _options_methods() -> dict[str, Any]:
    methods: dict[str, Any] = {}
    for group, spec in iter_settings():
        if not offered(group, spec.name):
            continue
        if is_switch(spec):
            methods.update(_switch_handlers(spec.name, spec))
        else:
            methods["opt_" + flag_of(spec)[2:].replace("-", "_")] = _setting_handler(
                spec.name, spec
            )
    return methods


class Options(usage.Options):
    """``twistd treadle --app module:app [--bind ENDPOINT ...] [--threads N] ...``"""

    synopsis = "[options] --app module:app"
    longdesc = (
        "Serve a WSGI app with treadle under twistd. The options are treadle serve's "
        "(docs/settings.md); logging, the pid file and daemonizing are twistd's."
    )
    optParameters = [["app", None, None, "The WSGI app: module:app or module.app (required)."]]

    def __init__(self) -> None:
        super().__init__()
        self.settings: dict[str, Any] = {}

    def parseOptions(self, options: Any = None) -> None:
        # twistd before Twisted 24.x printed a usage error and exited 0 (`twistd treadle
        # --threads many && echo started` said started); stop with status 2 on every
        # version, as `treadle serve` does, with twistd's own message.
        try:
            super().parseOptions(options)
        except usage.UsageError as error:
            sys.stderr.write(f"twistd treadle: error: {error} (see: twistd treadle --help)\n")
            raise SystemExit(2) from None

    def postOptions(self) -> None:
        if not self["app"]:
            raise usage.UsageError("--app module:app is required")
        try:
            # As for treadle serve: options over TREADLE_* variables over the defaults.
            offered_names = {
                spec.name for group, spec in iter_settings() if offered(group, spec.name)
            }
            from_env = {k: v for k, v in settings_from_env().items() if k in offered_names}
            self.config = Config.from_settings({**from_env, **self.settings})
        except ConfigError as error:
            raise usage.UsageError(str(error)) from None


for _name, _method in _options_methods().items():
    setattr(Options, _name, _method)


class ToTwistedLog(logging.Handler):
    """Forwards the ``treadle`` Python logger's records to Twisted's log (twistd's --logfile).

    Called on any thread: Twisted's log publisher is synchronous and its file observer
    writes each event in one call.
    """

    LEVELS = {
        logging.DEBUG: LogLevel.debug,
        logging.INFO: LogLevel.info,
        logging.WARNING: LogLevel.warn,
        logging.ERROR: LogLevel.error,
        logging.CRITICAL: LogLevel.critical,
    }

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 - a bad log call must not break the request
            self.handleError(record)
            return
        level = self.LEVELS.get(record.levelno, LogLevel.info)
        Logger(namespace=record.name).emit(level, "{line}", line=line)


def route_logs(config: Config) -> None:
    """Send treadle's log lines to twistd's log; the access log keeps its own target."""
    logger = logging.getLogger("treadle")
    logger.setLevel(getattr(logging, config.logging.log_level.upper()))
    logger.handlers = [ToTwistedLog()]
    logger.propagate = False
    access = logging.getLogger("treadle.access")
    target = config.logging.access_log
    if target:
        access.setLevel(logging.INFO)
        # "-" (stderr) is /dev/null once twistd daemonizes: those lines go to twistd's log.
        # A path gets treadle's own writer thread, so a slow disk never stalls the reactor.
        handler: logging.Handler
        if target == "-":
            handler = ToTwistedLog()
        else:
            handler = logs.AccessLogWriter(logs.FileLines(target))
            atexit.register(handler.close)
        access.handlers = [handler]
        access.propagate = False


class TwistdService(TreadleService):
    """TreadleService whose log routing, like its pool, starts after twistd daemonizes.

    The access log's writer thread must not exist before the fork: it would not survive it.
    """

    def startService(self) -> None:
        route_logs(self.config)
        super().startService()


def make_service(options: Options) -> TreadleService:
    """Import the app and build the service; the pool and listeners start in startService."""
    from treadle.cli import load_app

    config: Config = options.config
    try:
        app = load_app(options["app"], factory=config.app.factory)
    except AppLoadError as error:
        raise SystemExit(f"treadle: error: {error}") from None
    return TwistdService(app, config)
