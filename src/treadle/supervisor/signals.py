"""What each signal does to the supervisor: the one table the arbiter and docs/deploy.md use.

Composition layer: data only. The arbiter dispatches on ``ACTIONS``; ``markdown_table()``
renders the same rows for docs/deploy.md (a test keeps the committed page in step). It
never installs a handler itself.
"""

from __future__ import annotations

import signal
from typing import NamedTuple


class Row(NamedTuple):
    signum: signal.Signals
    action: str  # the Arbiter method that handles it: "on_" + action
    effect: str  # what the operator sees, for the docs


TABLE: tuple[Row, ...] = (
    Row(
        signal.SIGTERM,
        "stop",
        "Graceful stop: the listening sockets close, each worker finishes its requests "
        "within --graceful-timeout (then is killed), and the supervisor exits 0.",
    ),
    Row(
        signal.SIGINT,
        "interrupt",
        "Ctrl-C: as SIGTERM; a second SIGINT abandons the requests in flight and exits at once.",
    ),
    Row(
        signal.SIGQUIT,
        "quit",
        "Quick stop: as a second SIGINT.",
    ),
    Row(
        signal.SIGHUP,
        "reload",
        "Zero-downtime reload: new workers import the app afresh and report ready, then the "
        "old ones stop accepting and drain. If the new code cannot be loaded, the old workers "
        "keep serving and the error is logged.",
    ),
    Row(signal.SIGTTIN, "more", "One worker more."),
    Row(signal.SIGTTOU, "fewer", "One worker fewer (the oldest drains and exits); never below 1."),
    Row(
        signal.SIGUSR1,
        "reopen",
        "Reopen log files (after logrotate moved them), in the supervisor and every worker.",
    ),
    Row(
        signal.SIGCHLD,
        "reap",
        "(from the kernel) A child exited: it is reaped and, unless it was asked to stop, "
        "replaced, with backoff if workers keep dying.",
    ),
)

ACTIONS: dict[int, str] = {int(row.signum): row.action for row in TABLE}


def markdown_table() -> str:
    lines = ["| Signal | Effect |", "|---|---|"]
    lines += [f"| `{row.signum.name}` | {row.effect} |" for row in TABLE]
    return "\n".join(lines) + "\n"
