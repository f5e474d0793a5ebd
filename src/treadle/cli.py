"""The ``treadle`` command: argv + environment -> Config, load the app, serve.

Composition layer and the only place that calls sys.exit. The argument parser is
generated from config.py, so each setting is defined once. The app is imported
before any port is bound: a bad target fails with one line and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from treadle import __version__
from treadle.config import (
    Config,
    flag_of,
    iter_settings,
    parse_value,
    settings_from_env,
)
from treadle.errors import AppLoadError, ConfigError

EXIT_USAGE = 2


def add_setting_arguments(parser: argparse.ArgumentParser, exclude: Iterable[str] = ()) -> None:
    """One flag per setting; values stay raw strings (parsed by parse_value)."""
    skip = set(exclude)
    for _, spec in iter_settings():
        if spec.name in skip:
            continue
        meta = spec.metadata
        flag = flag_of(spec)
        help_text = meta["help"].replace("%", "%%")  # argparse formats help with %
        kwargs: dict[str, Any] = {"dest": spec.name, "default": None, "help": help_text}
        if meta["parse"].__name__ == "parse_bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif meta["repeat"]:
            kwargs.update(action="append", metavar=meta["metavar"] or "VALUE")
        else:
            kwargs["metavar"] = meta["metavar"] or spec.name.upper()
            if meta["choices"]:
                kwargs["choices"] = meta["choices"]
        parser.add_argument(flag, **kwargs)


def settings_from_args(namespace: argparse.Namespace) -> dict[str, Any]:
    """The settings given explicitly on the command line, parsed."""
    found: dict[str, Any] = {}
    for _, spec in iter_settings():
        raw = getattr(namespace, spec.name, None)
        if raw is None:
            continue
        if isinstance(raw, bool):
            found[spec.name] = raw
        elif spec.metadata["repeat"]:
            found[spec.name] = tuple(parse_value(spec, item) for item in raw)
        else:
            found[spec.name] = parse_value(spec, raw)
    return found


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="treadle", description="A WSGI server on Twisted.")
    parser.add_argument("--version", action="version", version=f"treadle {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve a WSGI app")
    serve.add_argument("target", help="the WSGI app: module:app or module.app")
    add_setting_arguments(serve)
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

    reactor.install()  # before the app is imported: it may import the global reactor

    try:
        config = config_from(namespace)
        if reload.is_child():
            config = reload.adopt(config)  # listen on the reload parent's sockets
        elif config.reload.reload:
            # The parent never imports the app: a broken app must not end the reloader.
            logs.configure(config)
            args = sys.argv[1:] if argv is None else list(argv)
            child_argv = [sys.executable, "-m", "treadle", *args]
            watch_dirs = reload.watch_dirs_for(namespace.target)
            sys.exit(reload.run_with_reload(child_argv, config, watch_dirs=watch_dirs))
        app = load_app(namespace.target, factory=config.app.factory)
    except (ConfigError, AppLoadError) as error:
        if reload.is_child():
            reload.print_cause(error)  # the developer wants the whole traceback
        print(f"treadle: error: {error}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    from treadle import server

    logs.configure(config)
    sys.exit(server.run(app, config))
