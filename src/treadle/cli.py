"""The ``treadle`` command: argv + environment -> Config, load the app, serve.

Composition layer and the only place that calls sys.exit. The argument parser is
generated from config.py, so each setting is defined once (with its default in --help
and its gunicorn/waitress spellings as aliases); flags treadle does not take fail with
advice (foreign_flags.py), a mistyped flag names the closest one, and no flag is ever
abbreviated. The app is imported before any port is bound: a bad target fails with one
line and exit status 2.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

from treadle import __version__
from treadle.config import (
    Config,
    aliases_of,
    flag_of,
    iter_settings,
    parse_value,
    settings_from_env,
)
from treadle.errors import AppLoadError, ConfigError
from treadle.foreign_flags import refused_flags
from treadle.settings_doc import claimed_flags, is_switch, metavar_of, shown_default

EXIT_USAGE = 2


def add_setting_arguments(parser: argparse.ArgumentParser, exclude: Iterable[str] = ()) -> None:
    """One flag per setting (plus its aliases), then the refused foreign flags.

    Values stay raw strings (parsed later by parse_value). A spelling the host parser
    already owns (Django's --pythonpath) is left to it.
    """
    skip = set(exclude)
    for _, spec in iter_settings():
        if spec.name in skip:
            continue
        meta = spec.metadata
        help_text = f"{meta['help']} (default: {shown_default(spec)})"
        kwargs: dict[str, Any] = {
            "dest": spec.name,
            "default": None,
            "help": help_text.replace("%", "%%"),  # argparse formats help with %
        }
        if is_switch(spec):
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["metavar"] = metavar_of(spec)
            if meta["repeat"]:
                kwargs["action"] = "append"
        add_spellings(parser, flag_of(spec), aliases_of(spec), kwargs)
    for _server, flag, advice in refused_flags(claimed_flags()):
        try:
            parser.add_argument(flag, action=RefusedFlag, advice=advice)
        except argparse.ArgumentError:
            continue  # the host parser has this spelling with its own meaning: keep it


def add_spellings(
    parser: argparse.ArgumentParser, flag: str, aliases: Sequence[str], kwargs: dict[str, Any]
) -> None:
    """The flag and its aliases as one option; an alias the parser already has is dropped."""
    short = [alias for alias in aliases if not alias.startswith("--")]
    long = [alias for alias in aliases if alias.startswith("--")]
    try:
        parser.add_argument(*short, flag, *long, **kwargs)
    except argparse.ArgumentError:
        parser.add_argument(flag, **kwargs)
        for alias in aliases:
            try:
                parser.add_argument(alias, **{**kwargs, "help": argparse.SUPPRESS})
            except argparse.ArgumentError:
                continue  # the host parser owns this spelling


class RefusedFlag(argparse.Action):
    """A flag treadle does not take (yet): fail with what to do instead, exit status 2."""

    def __init__(self, option_strings: list[str], dest: str, advice: str, **_: Any) -> None:
        # nargs="?": a value after the flag (-c config.py) is taken with it, never as the app.
        super().__init__(option_strings, dest=argparse.SUPPRESS, nargs="?", help=argparse.SUPPRESS)
        self.advice = advice

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> NoReturn:
        parser.error(f"{option_string}: {self.advice}")


def closest_flag(typed: str, known: Iterable[str]) -> str | None:
    """The known flag nearest to a mistyped one (--bnd -> --bind), or None."""
    word = typed.partition("=")[0]
    matches = difflib.get_close_matches(word, sorted(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unrecognized_message(extras: Sequence[str], known: Iterable[str]) -> str:
    """The error line for arguments no option took: the first unknown flag and a guess."""
    flags = [arg for arg in extras if arg.startswith("-") and arg != "-"]
    if not flags:
        return f"unrecognized arguments: {' '.join(extras)}"
    guess = closest_flag(flags[0], known)
    hint = f" (did you mean {guess}?)" if guess else ""
    return f"unrecognized argument: {flags[0].partition('=')[0]}{hint}"


class ServeParser(argparse.ArgumentParser):
    """``treadle serve``'s parser: an unknown flag fails here, with this command's usage.

    argparse hands a subcommand's leftovers to the top-level parser, which would print
    ``usage: treadle [-h] ...`` and no hint; failing in the subparser shows ``treadle serve``.
    """

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            # This command's own flags: `treadle mongrel2` takes fewer than `treadle serve`.
            own = {
                flag
                for action in self._actions
                if action.help != argparse.SUPPRESS  # not the refused gunicorn flags
                for flag in action.option_strings
            }
            self.error(unrecognized_message(extras, own | {"--help"}))
        return parsed, extras


def settings_from_args(namespace: argparse.Namespace) -> dict[str, Any]:
    """The settings given explicitly on the command line, parsed."""
    found: dict[str, Any] = {}
    for _, spec in iter_settings():
        raw = getattr(namespace, spec.name, None)
        if raw is None:
            continue
        try:
            if isinstance(raw, bool):
                found[spec.name] = raw
            elif spec.metadata["repeat"]:
                found[spec.name] = tuple(parse_value(spec, item) for item in raw)
            else:
                found[spec.name] = parse_value(spec, raw)
        except ConfigError as error:
            raise ConfigError(named(flag_of(spec), error)) from None
    return found


def named(name: str, error: ConfigError) -> str:
    """An error about a value, led by the flag or variable that gave it."""
    text = str(error)
    return text if text.startswith(name) else f"{name}: {text}"


def load_app(target: str, *, factory: bool = False) -> Any:
    """``module:attr`` or ``module.attr`` -> the WSGI callable, or AppLoadError (one line)."""
    if ":" in target:
        module_name, _, attr = target.partition(":")
    elif "." in target:
        module_name, _, attr = target.rpartition(".")
    else:
        raise AppLoadError(f"target {target!r} must look like module:app or module.app")
    if not module_name or not attr:
        raise AppLoadError(f"target {target!r} must look like module:app or module.app")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            raise AppLoadError(f"module {module_name!r} not found") from None
        raise AppLoadError(f"importing {module_name!r} failed: {error}") from None
    except Exception as error:  # noqa: BLE001 - the user's module may raise anything
        raise AppLoadError(
            f"importing {module_name!r} failed: {type(error).__name__}: {error}"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(f"module {module_name!r} has no attribute {attr!r}") from None
    if factory:
        if not callable(obj):
            raise AppLoadError(f"{target!r} is not callable, so it cannot be a --factory")
        try:
            obj = obj()
        except Exception as error:  # noqa: BLE001 - the user's factory may raise anything
            raise AppLoadError(
                f"factory {target!r} failed: {type(error).__name__}: {error}"
            ) from None
    if not callable(obj):
        raise AppLoadError(f"{target!r} is not callable (got {type(obj).__name__})")
    return obj


COMMANDS = ("serve", "mongrel2", "mongrel2-broker")


class TopParser(argparse.ArgumentParser):
    """``treadle``'s own parser: what comes before the command is checked here.

    gunicorn and waitress take the app with no command (``gunicorn app:app``); typed that
    way here, the error shows the line to type instead of "invalid choice".
    """

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        argv = list(sys.argv[1:] if args is None else args)
        first = next((arg for arg in argv if arg not in ("-h", "--help", "--version")), None)
        if first is not None and first not in COMMANDS:
            guess = difflib.get_close_matches(first, COMMANDS, n=1, cutoff=0.6)
            if guess and not first.startswith("-"):
                self.error(f"unknown command {first!r} (did you mean {guess[0]}?)")
            self.error(f"the command comes first; did you mean: treadle serve {' '.join(argv)}")
        return super().parse_known_args(argv, namespace)


def build_parser() -> argparse.ArgumentParser:
    parser = TopParser(prog="treadle", description="A WSGI server on Twisted.", allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"treadle {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ServeParser)
    serve = commands.add_parser(
        "serve",
        help="serve a WSGI app",
        description="Serve a WSGI app. Every option is also a TREADLE_* environment "
        "variable (docs/settings.md).",
        usage="%(prog)s [options] TARGET",
        epilog="gunicorn's and waitress's spellings that mean the same are shown beside each "
        "option; their other flags stop with what to use instead (docs/settings.md).",
        allow_abbrev=False,  # --thread must not quietly mean --threads
    )
    serve.add_argument("target", help="the WSGI app: module:app or module.app")
    add_setting_arguments(serve)
    from treadle.mongrel2 import command as mongrel2_command

    mongrel2 = commands.add_parser(
        "mongrel2",
        help="serve a WSGI app as a Mongrel2 handler (docs/mongrel2.md)",
        description="Serve a WSGI app behind Mongrel2, over ZeroMQ (docs/mongrel2.md).",
        usage="%(prog)s [options] TARGET SEND_SPEC [RECV_SPEC]",
        allow_abbrev=False,
    )
    mongrel2_command.add_arguments(mongrel2)
    add_setting_arguments(mongrel2, exclude=mongrel2_command.excluded_settings())
    broker = commands.add_parser(
        "mongrel2-broker",
        help="give each Mongrel2 request to a handler with a free thread (docs/mongrel2.md)",
        description="Pull requests from Mongrel2 and hand each to a `treadle mongrel2 "
        "--broker` handler that has a free thread (docs/mongrel2.md).",
        allow_abbrev=False,
    )
    broker.add_argument("send_spec", metavar="SEND_SPEC", help="Mongrel2's send_spec")
    broker.add_argument(
        "backend_spec", metavar="BACKEND_SPEC", help="where handlers connect, e.g. tcp://*:9995"
    )
    return parser


def config_from(namespace: argparse.Namespace, base: dict[str, Any] | None = None) -> Config:
    """Precedence: flags > TREADLE_* environment > base (e.g. Django settings) > defaults."""
    return Config.from_settings(
        {**(base or {}), **settings_from_env(), **settings_from_args(namespace)}
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    namespace = parser.parse_args(argv)
    from treadle import logs, reactor, reload
    from treadle.supervisor import child, standalone

    reactor.install()  # before the app is imported: it may import the global reactor
    if namespace.command == "mongrel2":
        sys.exit(run_mongrel2(namespace, sys.argv[1:] if argv is None else list(argv)))
    if namespace.command == "mongrel2-broker":
        sys.exit(run_mongrel2_broker(namespace))

    held: list[Any] = []
    try:
        config = config_from(namespace)
        if child.is_child():
            config = child.adopt(config)  # listen on the parent's sockets
        elif config.reload.reload or config.supervised():
            # The parent never imports the app: a broken app must not end the reloader,
            # and each worker (and each SIGHUP) imports it afresh.
            logs.configure(config)
            args = sys.argv[1:] if argv is None else list(argv)
            child_argv = [sys.executable, "-m", "treadle", *args]
            if config.reload.reload:
                watch_dirs = reload.watch_dirs_for(namespace.target)
                sys.exit(reload.run_with_reload(child_argv, config, watch_dirs=watch_dirs))
            from treadle.supervisor import arbiter

            sys.exit(arbiter.run_workers(child_argv, config))
        else:
            config, held = standalone.prepare(config)  # pid file, --user: before the app
        app = load_app(namespace.target, factory=config.app.factory)
    except (ConfigError, AppLoadError) as error:
        if child.is_child():
            reload.print_cause(error)  # the developer wants the whole traceback
        print(f"treadle: error: {error}", file=sys.stderr)
        # A worker that cannot load the app stops the supervisor instead of being retried.
        load_failed = isinstance(error, AppLoadError) and child.is_worker()
        sys.exit(child.EXIT_APP_LOAD if load_failed else EXIT_USAGE)
    from treadle import server

    logs.configure(config)
    if child.is_child():
        sys.exit(server.run(app, config, on_started=child.on_started))
    try:
        status = server.run(app, config, on_started=lambda running: serving(config, running))
    finally:
        standalone.finish(config, held)
    sys.exit(status)


def pyzmq_missing(error: ImportError) -> int:
    """The one line for a mongrel2 command without pyzmq; the exit status."""
    print(
        f"treadle: error: mongrel2 needs pyzmq ({error}): pip install 'treadle[mongrel2]'",
        file=sys.stderr,
    )
    return EXIT_USAGE


def run_mongrel2(namespace: argparse.Namespace, args: list[str]) -> int:
    """``treadle mongrel2``: the app behind Mongrel2; the exit status.

    With --workers, --max-requests or --reload this process is the supervisor (it imports
    neither pyzmq nor the app and holds no socket) and its workers run this same command.
    """
    import importlib.util

    from treadle import logs, reload
    from treadle.mongrel2 import command
    from treadle.supervisor import child, standalone

    if importlib.util.find_spec("zmq") is None:
        return pyzmq_missing(ImportError("No module named 'zmq'"))
    try:
        config = config_from(namespace)
        endpoints = command.endpoints_from(namespace)
    except ConfigError as error:
        print(f"treadle: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if not child.is_child() and (config.reload.reload or config.supervised()):
        logs.configure(config)
        child_argv = [sys.executable, "-m", "treadle", *args]
        if config.reload.reload:
            watch_dirs = reload.watch_dirs_for(namespace.target)
            return reload.run_with_reload(
                child_argv, config, watch_dirs=watch_dirs, listen_on=False
            )
        from treadle.supervisor import arbiter

        return arbiter.run_workers(child_argv, config, listen_on=False)
    try:
        from treadle.mongrel2 import serve
    except ImportError as error:
        return pyzmq_missing(error)
    try:
        if child.is_child():
            config = child.adopt(config)  # dies with the supervisor; wsgi.multiprocess
        else:
            standalone.prepare_without_sockets(config)  # pid file, --user: before the app
        app = load_app(namespace.target, factory=config.app.factory)
    except (ConfigError, AppLoadError) as error:
        if child.is_child():
            reload.print_cause(error)  # the developer wants the whole traceback
        print(f"treadle: error: {error}", file=sys.stderr)
        load_failed = isinstance(error, AppLoadError) and child.is_worker()
        return child.EXIT_APP_LOAD if load_failed else EXIT_USAGE
    logs.configure(config)
    if child.is_child():
        return serve.run(app, config, endpoints, on_started=child.on_started)
    try:
        return serve.run(
            app, config, endpoints, on_started=lambda running: serving(config, running)
        )
    finally:
        standalone.finish(config, [])


def run_mongrel2_broker(namespace: argparse.Namespace) -> int:
    """``treadle mongrel2-broker``: no app, no reactor; the exit status."""
    from treadle import logs

    try:
        from treadle.mongrel2 import broker
    except ImportError as error:
        return pyzmq_missing(error)
    logs.configure(Config.from_settings({}))
    return broker.run(namespace.send_spec, namespace.backend_spec)


def serving(config: Config, server: Any) -> None:
    """Reactor thread, one process listening: its pid file, and tell systemd."""
    from treadle import sdnotify
    from treadle.supervisor import standalone

    standalone.started(config)
    if sdnotify.ready("1 process ready (no workers)"):
        server.reactor.addSystemEventTrigger(
            "before", "shutdown", lambda: sdnotify.stopping("stopping")
        )
