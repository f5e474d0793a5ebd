"""Settings as people read them: the defaults and value names of --help, and docs/settings.md.

Pure layer: text from the definitions in config.py (and foreign_flags.py), no I/O but
printing when run as ``python -m treadle.settings_doc > docs/settings.md``. A test fails
when the committed docs drift from what this renders; nothing here defines a setting.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from treadle.config import (
    GIB,
    GROUPS,
    KIB,
    MIB,
    aliases_of,
    env_of,
    flag_of,
    iter_settings,
    parse_bool,
    parse_bytes,
    parse_count,
    parse_optional_seconds,
    parse_seconds,
)
from treadle.foreign_flags import REFUSED

_METAVARS: dict[Callable[[str], Any], str] = {
    parse_seconds: "SECONDS",
    parse_optional_seconds: "SECONDS",
    parse_bytes: "SIZE",
    parse_count: "N",
}


def is_switch(spec: dataclasses.Field[Any]) -> bool:
    """An on/off setting: --name and --no-name on the command line, no value."""
    return spec.metadata["parse"] is parse_bool


def metavar_of(spec: dataclasses.Field[Any]) -> str:
    """What --help shows for the value: given, the choices, or the kind of value."""
    meta = spec.metadata
    if meta["metavar"]:
        return str(meta["metavar"])
    if meta["choices"]:
        return "{" + ",".join(meta["choices"]) + "}"
    return _METAVARS.get(meta["parse"], spec.name.upper())


def shown_default(spec: dataclasses.Field[Any]) -> str:
    """The default as a user would type or read it (16K, 30, off), for --help and the docs."""
    if spec.metadata.get("shown_default"):
        return str(spec.metadata["shown_default"])
    value: Any = spec.default
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "off"
    if value in ("", ()):
        return "none"
    if isinstance(value, tuple):
        return ", ".join(str(item) for item in value)
    if spec.metadata["parse"] is parse_bytes and value:
        for unit, size in (("G", GIB), ("M", MIB), ("K", KIB)):
            if value % size == 0:
                return f"{value // size}{unit}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def claimed_flags() -> set[str]:
    """Every spelling a setting answers to (flags, aliases, --no- forms of switches)."""
    claimed = set()
    for _, spec in iter_settings():
        for flag in (flag_of(spec), *aliases_of(spec)):
            claimed.add(flag)
            if is_switch(spec) and flag.startswith("--"):
                claimed.add("--no-" + flag[2:])
    return claimed


def render_settings_markdown() -> str:
    """docs/settings.md, generated; a test fails when the committed file drifts."""
    lines = [
        "# Settings",
        "",
        "Generated from `src/treadle/config.py` by "
        "`python -m treadle.settings_doc > docs/settings.md`;",
        "do not edit by hand. Precedence: command-line flag > environment variable > "
        "Django `TREADLE` dict > default. Sizes take K, M and G suffixes (16K, 1M); times",
        "are in seconds. `treadle serve --help` shows the same list.",
        "",
    ]
    for group_name, group_cls in GROUPS:
        lines += [f"## {group_name}", ""]
        for spec in dataclasses.fields(group_cls):
            meta = spec.metadata
            usage = flag_of(spec) if is_switch(spec) else f"{flag_of(spec)} {metavar_of(spec)}"
            lines.append(f"### `{usage}`" + (" (repeatable)" if meta["repeat"] else ""))
            lines.append("")
            lines.append(meta["help"])
            lines.append("")
            if is_switch(spec):
                lines.append(f"- off: `--no-{flag_of(spec)[2:]}`")
            if aliases_of(spec):
                spellings = ", ".join(f"`{alias}`" for alias in aliases_of(spec))
                lines.append(f"- also accepted: {spellings}")
            variables = [env_of(spec), *spec.metadata.get("env_aliases", ())]
            lines.append("- environment: " + ", ".join(f"`{name}`" for name in variables))
            why = f" ({meta['why']})" if meta["why"] else ""
            lines.append(f"- default: `{shown_default(spec)}`{why}")
            if meta["choices"]:
                lines.append(f"- choices: {', '.join(meta['choices'])} (any case)")
            lines.append("")
    lines += refused_section()
    return "\n".join(lines)


def refused_section() -> list[str]:
    """The table of other servers' flags that treadle refuses, and what to use instead."""
    claimed = claimed_flags()
    lines = [
        "## Flags from gunicorn and waitress",
        "",
        'Their spellings that mean the same as a treadle setting are accepted ("also accepted"',
        "above). These fail at start with the advice below and exit status 2, rather than being",
        "taken with a meaning they do not have here:",
        "",
        "| flag | from | instead |",
        "|---|---|---|",
    ]
    for server, spellings, advice in REFUSED:
        left = [flag for flag in spellings if flag not in claimed]
        if left:
            flags = ", ".join(f"`{flag}`" for flag in left)
            lines.append(f"| {flags} | {server} | {advice} |")
    lines.append("")
    return lines


if __name__ == "__main__":
    print(render_settings_markdown(), end="")
