"""``manage.py server`` options + settings.TREADLE + TREADLE_* -> flat treadle settings.

Composition layer (Django integration). Precedence, highest first: the command's flags
(an explicit --bind replaces addrport), the TREADLE_* environment, settings.TREADLE,
then the command's defaults (127.0.0.1:8000, reload on, as runserver). It binds
nothing and imports no app; Config.from_settings does the validation.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from typing import Any

from treadle.cli import settings_from_args
from treadle.config import iter_settings, parse_value, settings_from_env
from treadle.errors import ConfigError

DEFAULT_ADDR = "127.0.0.1"
DEFAULT_ADDR_IPV6 = "::1"
DEFAULT_PORT = "8000"

# runserver's addrport forms: "8000", "0.0.0.0:8000", "[::1]:8000", "localhost:8000".
_ADDRPORT = re.compile(
    r"""^(?:
(?P<addr>
    (?P<ipv4>\d{1,3}(?:\.\d{1,3}){3}) |
    (?P<ipv6>\[[a-fA-F0-9:]+\]) |
    (?P<fqdn>[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*)
):)?(?P<port>\d+)$""",
    re.X,
)


def bind_from_addrport(addrport: str | None, *, ipv6: bool = False) -> str | None:
    """runserver's ``addrport`` (and ``--ipv6``) -> a --bind value; None when neither is given."""
    if not addrport:
        return f"[{DEFAULT_ADDR_IPV6}]:{DEFAULT_PORT}" if ipv6 else None
    match = _ADDRPORT.match(addrport)
    if match is None:
        raise ConfigError(f"{addrport!r} is not a valid port number or address:port pair")
    port = match["port"]
    if match["ipv6"]:
        return f"{match['ipv6']}:{port}"
    addr = match["addr"]
    if not addr:
        return f"[{DEFAULT_ADDR_IPV6}]:{port}" if ipv6 else f"{DEFAULT_ADDR}:{port}"
    if ipv6 and not match["fqdn"]:
        raise ConfigError(f"{addr!r} is not a valid IPv6 address")
    if addr == "0":  # runserver shows "0:8000" as 0.0.0.0
        addr = "0.0.0.0"
    return f"{addr}:{port}"


def settings_from_django(value: Any) -> dict[str, Any]:
    """settings.TREADLE (``{"threads": 8, "max_body_bytes": "64M"}``) -> flat settings.

    Keys are setting names (case-insensitive); a string is parsed like its flag would be,
    so sizes and durations may be written either way. Unknown names fail in Config.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"settings.TREADLE must be a dict, not {type(value).__name__}")
    specs = {spec.name: spec for _, spec in iter_settings()}
    found: dict[str, Any] = {}
    for key, item in value.items():
        name = str(key).lower()
        spec = specs.get(name)
        if spec is None:
            found[name] = item  # Config.from_settings names it in its error
        elif spec.metadata["repeat"]:
            items = (item,) if isinstance(item, str) else tuple(item)
            found[name] = tuple(
                parse_value(spec, part) if isinstance(part, str) else part for part in items
            )
        elif isinstance(item, str) and spec.metadata["parse"] is not str:
            found[name] = parse_value(spec, item)
        else:
            found[name] = item
    return found


def gather_settings(
    options: Mapping[str, Any],
    django_settings: Any,
    environ: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], set[str]]:
    """The flat settings for Config.from_settings, and the names set by someone explicitly.

    ``options`` is the command's options dict (setting flags keep their names as dests).
    """
    defaults: dict[str, Any] = {"bind": (f"{DEFAULT_ADDR}:{DEFAULT_PORT}",), "reload": True}
    explicit: dict[str, Any] = {
        **settings_from_django(django_settings),
        **settings_from_env(environ),
    }
    addr_bind = bind_from_addrport(options.get("addrport"), ipv6=bool(options.get("use_ipv6")))
    if addr_bind is not None:
        explicit["bind"] = (addr_bind,)
    explicit.update(settings_from_args(argparse.Namespace(**options)))
    if options.get("use_reloader") is False:  # --noreload
        explicit["reload"] = False
    return {**defaults, **explicit}, set(explicit)
