"""Routes each request: a static mount, a path outside the prefix (404), or the WSGI app.

Reactor layer: runs in the reactor thread for every request, so it does as little
as possible (one prefix test for static files, one path decode). The WSGI submit
function is injected by server.py; this module never imports wsgi/container.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from treadle.wsgi.environ import decode_path, split_script_name

log = logging.getLogger("treadle")

OVERLOADED = "Service Unavailable: the server is at capacity, retry shortly"


class Dispatcher:
    """Called with each exchange once its head (and buffered body) is in."""

    def __init__(
        self,
        *,
        submit: Callable[[Any], bool],
        script_name: str = "",
        static: Any = None,
        retry_after_s: int = 1,
    ) -> None:
        self.submit = submit
        self.script_name = script_name
        self.static = static
        self.retry_after = str(retry_after_s)

    def __call__(self, exchange: Any) -> None:
        head = exchange.head
        static = self.static
        if static is not None and static.match(head.path):
            response = static.respond(head)
            if response is not None:  # None: a miss the mount passes on to the app
                exchange.send_static(response)
                return
        path_info = split_script_name(decode_path(head.path), self.script_name)
        if path_info is None:
            exchange.send_error(
                404, f"Not Found: this server only serves URLs under {self.script_name}/"
            )
            return
        exchange.path_info = path_info
        if not self.submit(exchange):
            log.warning(
                "503 for %s %s: all threads busy and the queue is full",
                exchange.record.method,
                exchange.record.path,
            )
            exchange.send_error(503, OVERLOADED, [("Retry-After", self.retry_after)])
