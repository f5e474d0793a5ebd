"""Access log lines, written through the ``treadle.access`` logger.

Reactor layer: called in the reactor thread when a request ends, only when an
access log is configured (nothing on the fast path otherwise). The default line is
the combined log format plus the request's duration in microseconds; a custom
format uses ``%(atom)s`` names (see ATOMS and docs/logging.md). What the client sent
is escaped as Apache and nginx do, so a field can never break the line's format. It
only formats: the writing happens in a writer thread (logs.py), never in the reactor.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from treadle.errors import ConfigError

log = logging.getLogger("treadle.access")

COMBINED = '%(h)s - - [%(t)s] "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(D)s'

ATOMS = {
    "h": "remote address",
    "t": "time the request ended, [10/Oct/2000:13:55:36 +0000]",
    "r": "request line",
    "m": "method",
    "U": "path (undecoded target)",
    "s": "status (- if none was sent)",
    "b": "body bytes sent",
    "f": "Referer",
    "a": "User-Agent",
    "D": "duration in microseconds (queued + running)",
    "queue_us": "time waiting for a thread, microseconds",
    "service_us": "time running in the thread, microseconds",
    "wait_us": "time blocked in treadle.wait, microseconds",
    "wait_count": "number of treadle.wait/call calls",
    "view": "Django view name, or -",
    "request_id": "the request id used in error logs",
}


# Anything but printable ASCII, '"' and '\\': escaped as Apache's ap_escape_logitem does
# ('\\"', '\\\\', '\\xhh'), so a User-Agent with a quote cannot end its field early and a
# newline cannot forge a second line. Header values reach us as latin-1, one char per byte.
_UNSAFE = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")
_ESCAPES = {code: f"\\x{code:02x}" for code in range(256)}
_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\"})
_ESCAPES.update({code: chr(code) for code in range(0x20, 0x7F) if chr(code) not in '"\\'})


def escape(text: str) -> str:
    """A client-supplied field as it may appear in a log line. Called in the reactor thread."""
    if _UNSAFE.search(text) is None:
        return text  # the usual case: nothing to do
    return text.translate(_ESCAPES)


def check_format(fmt: str) -> None:
    """Refuse a format naming an unknown atom or not %-formattable, at start-up rather than
    with a logging traceback on every request."""
    names = set(re.findall(r"%\((\w*)\)", fmt))
    unknown = sorted(names - ATOMS.keys())
    if unknown:
        raise ConfigError(
            f"--access-log-format: unknown atom %({unknown[0]})s; known: "
            + ", ".join(sorted(ATOMS))
        )
    try:
        fmt % dict.fromkeys(ATOMS, 0)
    except (TypeError, ValueError, KeyError) as error:
        raise ConfigError(f"--access-log-format {fmt!r} cannot be used: {error}") from None


class AccessLog:
    def __init__(self, fmt: str | None = None) -> None:
        self.fmt = fmt or COMBINED
        check_format(self.fmt)
        self._second = -1
        self._stamp = ""

    def _time(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now))
        return self._stamp

    def __call__(self, exchange: Any) -> None:
        """Called in the reactor thread with a finished exchange."""
        record = exchange.record
        head = exchange.head
        peer = exchange.peer
        referer = head.header(b"referer")
        agent = head.header(b"user-agent")
        atoms = {
            "h": peer[0] if peer else "unix",
            "t": self._time(),
            "r": escape(f"{record.method} {record.path} HTTP/{head.http_version}"),
            "m": escape(record.method),
            "U": escape(record.path),
            "s": record.status or "-",
            "b": record.bytes_sent,
            "f": escape(referer.decode("latin-1")) if referer else "-",
            "a": escape(agent.decode("latin-1")) if agent else "-",
            # Truncated, not rounded (as Apache's %D): the parts never sum past the whole.
            "D": int(max(record.finished_at - record.queued_at, 0.0) * 1e6),
            "queue_us": int(record.queue_s * 1e6),
            "service_us": int(record.service_s * 1e6),
            "wait_us": int(record.wait_s * 1e6),
            "wait_count": record.wait_count,
            "view": escape(record.view) if record.view else "-",
            "request_id": record.request_id,
        }
        log.info(self.fmt, atoms)
