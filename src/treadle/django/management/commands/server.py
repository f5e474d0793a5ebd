"""``python manage.py server [addrport]``: serve this Django project with treadle.

Composition layer (Django integration): options -> Config, logging, system checks, static
mounts, then treadle.server.run with settings.WSGI_APPLICATION. runserver's addrport,
--noreload, --nostatic and --insecure mean what they mean there; every treadle setting
is a flag too. With --workers N this process is the supervisor (supervisor/arbiter.py) and
each worker runs this same command line. It never binds a socket itself and never
reimplements reload or the supervisor.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from django import get_version
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.servers.basehttp import get_internal_wsgi_application
from django.db import connections
from django.utils import autoreload

from treadle import logs, server
from treadle import reactor as treadle_reactor
from treadle.cli import add_setting_arguments, unrecognized_message
from treadle.config import Config, flag_of, iter_settings
from treadle.django import devlog
from treadle.django.config import gather_settings
from treadle.django.mounts import django_mounts
from treadle.errors import ConfigError
from treadle.supervisor import arbiter, child, standalone

log = logging.getLogger("treadle")

MIDDLEWARE = "treadle.django.middleware.TreadleMiddleware"
# The WSGI app is settings.WSGI_APPLICATION: treadle's --factory has no meaning here.
# --user/--group/--umask promise that the app never runs as root, but manage.py has set
# Django up (settings, every app's ready()) before a command runs: run manage.py as the
# right user instead (systemd's User=), or use `treadle serve` to drop privileges.
NOT_FLAGS = {"factory", "user", "group", "umask"}


class Command(BaseCommand):
    help = "Serve this project with treadle (a production WSGI server) in place of runserver."
    # Checks run in handle(), in the process that serves (a reload child re-runs them).
    requires_system_checks: list[str] = []

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        """Django's parser without abbreviations (``--thread 4`` must not run as --threads),
        and a mistyped flag named with the closest one, as ``treadle serve`` does."""
        kwargs.setdefault("allow_abbrev", False)
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        django_error = parser.error
        prefix = "unrecognized arguments: "

        def error(message: str) -> None:
            if message.startswith(prefix):
                extras = message[len(prefix) :].split()
                message = unrecognized_message(extras, parser._option_string_actions)
            django_error(message)

        parser.error = error  # type: ignore[method-assign]
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "addrport", nargs="?", help="Optional port number, or ipaddr:port (as runserver)."
        )
        parser.add_argument(
            "--ipv6", "-6", action="store_true", dest="use_ipv6", help="Listen on ::1 by default."
        )
        parser.add_argument(
            "--noreload",
            action="store_false",
            dest="use_reloader",
            help="Do not restart the server when a source file changes.",
        )
        parser.add_argument(
            "--nostatic",
            action="store_false",
            dest="use_static_handler",
            help="Do not serve static files at STATIC_URL.",
        )
        parser.add_argument(
            "--insecure",
            action="store_true",
            dest="insecure_serving",
            help="Serve static files with the staticfiles finders even if DEBUG is False.",
        )
        parser.add_argument(
            "--media",
            action="store_true",
            dest="serve_media",
            help="Also serve MEDIA_ROOT at MEDIA_URL (user uploads; off by default).",
        )
        parser.add_argument("--skip-checks", action="store_true", help="Skip system checks.")
        add_setting_arguments(parser, exclude=NOT_FLAGS | clashing_settings(parser))

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not settings.ALLOWED_HOSTS:
            raise CommandError("You must set settings.ALLOWED_HOSTS if DEBUG is False.")
        try:
            flat, explicit = gather_settings(options, getattr(settings, "TREADLE", None))
            access_routed = "access_log" not in explicit and logger_configured("treadle.access")
            if access_routed:
                flat["access_log"] = "-"  # on, with the handlers settings.LOGGING gave it
            # Development (reload on) prints what runserver prints; production is unchanged.
            development = bool(flat.get("reload"))
            runserver_lines = (
                development
                and not access_routed
                and not ({"access_log", "access_log_format"} & explicit)
            )
            if runserver_lines:
                flat["access_log"] = "-"
                flat["access_log_format"] = devlog.RUNSERVER_FORMAT
            if "reload" not in explicit and ({"workers", "max_requests"} & explicit):
                flat["reload"] = False  # asking for the supervisor is asking for production
            config = Config.from_settings(flat)
            debug_level = treadle_debug_level(os.environ)
        except ConfigError as error:
            raise CommandError(str(error)) from None

        def setup_logging() -> None:
            configure_logging(
                config, explicit, access_routed=access_routed, debug_level=debug_level
            )
            if runserver_lines:
                devlog.route_access_log()
            if development and not (
                logger_configured("django") or logger_configured("django.request")
            ):
                devlog.show_server_errors()

        reloading, no_reload = import_reload()
        if child.is_child():
            config = child.adopt(config)  # listen on the reloader's or supervisor's sockets
        elif config.supervised():
            setup_logging()
            # Each worker runs this command line again (Django's own restart arguments).
            argv = [str(arg) for arg in autoreload.get_child_arguments()]
            status = arbiter.run_workers(argv, config)
            if status:
                raise CommandError("treadle's supervisor stopped (see above)", returncode=status)
            return
        elif reloading is not None and config.reload.reload:
            # The watching parent never imports the app: a broken app must not end it.
            setup_logging()
            # Django's own restart arguments: they handle manage.py, -m django, entry scripts.
            child_argv = [str(arg) for arg in autoreload.get_child_arguments()]
            watch_dirs = reloading.watch_dirs_for(settings.SETTINGS_MODULE)
            status = reloading.run_with_reload(child_argv, config, watch_dirs=watch_dirs)
            if status:
                raise CommandError("could not start the reloader (see above)", returncode=status)
            return
        elif not config.reload.reload:
            no_reload = None
        held: list[Any] = []
        if not child.is_child():
            try:
                config, held = standalone.prepare(config)  # --pid-file, systemd: sockets
            except ConfigError as error:
                raise CommandError(str(error)) from None
        try:
            status = self.serve(config, options, setup_logging, no_reload)
        finally:
            if not child.is_child():
                standalone.finish(config, held)
        if status:
            raise CommandError(
                "treadle stopped with an error (see the log above)", returncode=status
            )

    def serve(
        self,
        config: Config,
        options: Mapping[str, Any],
        setup_logging: Callable[[], None],
        no_reload: str | None,
    ) -> int:
        """Middleware, the WSGI app, logging, static mounts, checks; then serve until a signal."""
        treadle_reactor.install()  # before the app is loaded: it may import the reactor
        middleware = list(settings.MIDDLEWARE)
        if MIDDLEWARE not in middleware:
            settings.MIDDLEWARE = [MIDDLEWARE, *middleware]
        # basehttp's loader: request_started/finished fire, so DB connections are closed.
        try:
            app = get_internal_wsgi_application()
        except Exception as error:
            if child.is_worker():  # the supervisor stops on this status instead of retrying
                log.exception("could not load the WSGI application")
                raise CommandError(str(error), returncode=child.EXIT_APP_LOAD) from error
            raise
        # After the app: a wsgi.py calling django.setup() applies settings.LOGGING again.
        setup_logging()
        if no_reload:
            log.warning("auto-reload is not available (%s): serving without it", no_reload)
        mounts = django_mounts(
            script_name=config.app.script_name,
            serve_static=options["use_static_handler"],
            insecure=options["insecure_serving"],
            serve_media=options["serve_media"],
        )
        if not options["skip_checks"]:
            self.stdout.write("Performing system checks...\n\n")
            self.check(display_num_errors=True)
        self.check_migrations()
        for connection in connections.all(initialized_only=True):
            connection.close()  # opened by the migration check, in this (main) thread
        self.stdout.write(
            f"Django version {get_version()}, using settings {settings.SETTINGS_MODULE!r}\n"
            "Starting treadle; quit with CONTROL-C.\n"
        )
        self.stdout.flush()
        if child.is_child():
            return server.run(app, config, mounts=mounts, on_started=child.on_started)
        return server.run(
            app, config, mounts=mounts, on_started=lambda _server: standalone.started(config)
        )


def clashing_settings(parser: CommandParser) -> set[str]:
    """Settings whose flag or dest the parser already has (Django's own options, ours)."""
    flags = set(parser._option_string_actions)  # argparse has no public listing
    dests = {action.dest for action in parser._actions}
    clashing = set()
    for _, spec in iter_settings():
        flag = flag_of(spec)
        if flag in flags or "--no-" + flag[2:] in flags or spec.name in dests:
            clashing.add(spec.name)
    return clashing


def logger_configured(name: str) -> bool:
    """Does settings.LOGGING configure this logger?"""
    config = getattr(settings, "LOGGING", None) or {}
    return name in (config.get("loggers") or {})


def treadle_debug_level(environ: Mapping[str, str]) -> int | None:
    """TREADLE_DEBUG=1..5 -> a logging level (5 adds per-request traces), or None."""
    text = environ.get("TREADLE_DEBUG", "").strip()
    if not text:
        return None
    try:
        return logs.DEBUG_LEVELS[int(text)]
    except (ValueError, KeyError):
        raise ConfigError(f"TREADLE_DEBUG must be 1 to 5, not {text!r}") from None


def configure_logging(
    config: Config, explicit: set[str], *, access_routed: bool, debug_level: int | None
) -> None:
    """treadle's own handlers, unless settings.LOGGING routes the "treadle" logger."""
    treadle_log = logging.getLogger("treadle")
    access_log = logging.getLogger("treadle.access")
    routed = logger_configured("treadle")
    level = treadle_log.level
    access_state = (access_log.handlers[:], access_log.propagate, access_log.level)
    logs.configure(config, own_handlers=not routed)
    if routed and "log_level" not in explicit and level != logging.NOTSET:
        treadle_log.setLevel(level)  # settings.LOGGING's level, unless a flag says otherwise
    if access_routed:
        access_log.handlers, access_log.propagate, access_log.level = access_state
    if debug_level is not None:
        treadle_log.setLevel(debug_level)


def import_reload() -> tuple[Any, str | None]:
    """(treadle.reload, None), or (None, why) when it cannot be imported."""
    try:
        from treadle import reload
    except ImportError as error:
        return None, str(error)
    return reload, None
