"""Development logging for ``manage.py server`` with reload on: what runserver's console shows.

Composition layer (Django integration), set up once per process by the command. Each
request gives runserver's line (``[30/Nov/2026 19:30:00] "GET / HTTP/1.1" 200 1234``)
through Django's ``django.server`` logger, so settings.LOGGING routes it as it would
runserver's; a 500 prints its traceback even with DEBUG off. Production (reload off)
never comes here.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping

from django.utils.log import RequireDebugFalse

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# treadle's access-log atoms (accesslog.py) in runserver's message: request line, status, size.
RUNSERVER_FORMAT = '"%(r)s" %(s)s %(b)s'


class ToDjangoServer(logging.Handler):
    """Hands treadle's access-log records to ``django.server`` at runserver's levels."""

    def __init__(self) -> None:
        super().__init__()
        self.target = logging.getLogger("django.server")

    def emit(self, record: logging.LogRecord) -> None:
        """Called in the reactor thread, once per finished request."""
        atoms = record.args if isinstance(record.args, Mapping) else {}
        status = atoms.get("s")
        code = status if isinstance(status, int) else 0
        # As runserver's WSGIRequestHandler.log_message: 5xx error, 4xx warning, else info.
        if code >= 500:
            level = logging.ERROR
        elif code >= 400:
            level = logging.WARNING
        else:
            level = logging.INFO
        # status_code lets Django's ServerFormatter colour the line as runserver does.
        extra = {"status_code": code or None, "server_time": server_time(record.created)}
        self.target.log(level, record.getMessage(), extra=extra)


def server_time(when: float) -> str:
    """runserver's time stamp (http.server's log_date_time_string): 30/Nov/2026 19:30:00."""
    year, month, day, hour, minute, second, *_ = time.localtime(when)
    return f"{day:02d}/{MONTHS[month - 1]}/{year:04d} {hour:02d}:{minute:02d}:{second:02d}"


def route_access_log() -> None:
    """treadle's per-request lines go to ``django.server`` (after logs.configure)."""
    access = logging.getLogger("treadle.access")
    access.handlers = [ToDjangoServer()]
    access.setLevel(logging.INFO)
    access.propagate = False


def show_server_errors() -> None:
    """A 500's traceback on stderr while DEBUG is off (Django's console shows it in DEBUG)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.ERROR)
    handler.addFilter(RequireDebugFalse())
    handler.set_name("treadle-development")
    logger = logging.getLogger("django.request")
    if not any(h.get_name() == "treadle-development" for h in logger.handlers):
        logger.addHandler(handler)
