"""systemd's readiness protocol (sd_notify) spoken directly to ``$NOTIFY_SOCKET``.

Reactor-free helper used by the composition roots (cli.py for one process, the
supervisor's Arbiter for N workers): one datagram per state change, ``KEY=VALUE`` lines
as systemd's sd_notify(3) documents them. No libsystemd: the protocol is one sendto().
A name starting with ``@`` is a Linux abstract socket (the ``@`` stands for a NUL byte).
It must never raise into its caller: a service manager that went away (or a socket we
may not write) must not stop the server, so errors are logged at debug level only.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("treadle")

ENV = "NOTIFY_SOCKET"


def address() -> str | bytes | None:
    """Where to notify, from the environment; None when no service manager listens."""
    name = os.environ.get(ENV, "")
    if not name:
        return None
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    if name.startswith("/"):
        return name
    log.debug("%s=%r is not a unix socket path: not notifying", ENV, name)
    return None


def notify(**fields: str | int) -> bool:
    """Send ``KEY=VALUE`` lines in one datagram; True if sent.

    ``notify(READY=1, STATUS="2 workers")`` sends ``READY=1\\nSTATUS=2 workers``.
    """
    target = address()
    if target is None:
        return False
    message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message, target)
    except OSError as error:
        log.debug("sd_notify to %s failed: %s", os.environ.get(ENV), error)
        return False
    return True


def ready(status: str) -> bool:
    return notify(READY=1, STATUS=status, MAINPID=os.getpid())


def reloading(status: str) -> bool:
    # Type=notify-reload (systemd 253+) wants MONOTONIC_USEC beside RELOADING=1.
    now_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(RELOADING=1, STATUS=status, MONOTONIC_USEC=now_us)


def stopping(status: str) -> bool:
    return notify(STOPPING=1, STATUS=status)
