"""One Mongrel2 handler's side: messages in, routed to the client (connection id) they are for.

Reactor layer: every method runs in the reactor thread; no ZeroMQ here (transport.py
moves the bytes, ``send`` is injected) and no wsgi/* import (the dispatcher, the body
classes and the record type are injected by the composition root). Each Mongrel2
connection id is a client.Client, which http/exchange.py sees as its connection, so the
dispatcher, pool, limits, timeouts and cancellation are those of HTTP. Malformed messages
are dropped with a rate-limited log line; upload files are checked here (``confined``).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from treadle.config import Limits, Timeouts
from treadle.deadlines import Deadlines
from treadle.http import h1_response
from treadle.http.exchange import Exchange
from treadle.mongrel2.client import Client
from treadle.mongrel2.message import Control, Disconnect, MessageError, parse_message

log = logging.getLogger("treadle")

MALFORMED_LOG_INTERVAL_S = 60.0


class Handler:
    """One Mongrel2 handler's clients (keyed by server UUID and connection id)."""

    def __init__(
        self,
        *,
        send: Callable[[list[bytes]], None],
        call_soon: Callable[[Callable[[], None]], Any],
        deadlines: Deadlines,
        dispatch: Callable[[Exchange], None],
        bodies: Any,
        records: Callable[[str, str, float], Any],
        limits: Limits,
        timeouts: Timeouts,
        on_finished: Callable[[Exchange], None] | None = None,
        upload_dir: Path | None = None,
        upload_timeout_s: float = 60.0,
    ) -> None:
        self.send = send
        self.call_soon = call_soon
        self.deadlines = deadlines
        self.dispatch = dispatch
        self.bodies = bodies
        self.records = records
        self.limits = limits
        self.timeouts = timeouts
        self.on_finished = on_finished
        self.upload_dir = upload_dir.resolve() if upload_dir is not None else None
        self.upload_timeout_s = upload_timeout_s
        self.clients: dict[tuple[bytes, bytes], Client] = {}
        self.claimed: set[Path] = set()  # upload files a client is waiting on
        self.date = h1_response.http_date(deadlines.now)
        deadlines.on_tick.append(self._tick)
        self.on_quiet: Callable[[], None] | None = None
        # Requests received and not yet ended (answered, refused, dropped): a broker gives
        # this handler one request per free thread (mongrel2/broker.py).
        self.in_hand = 0
        self.on_request_done: Callable[[bytes, bytes, int], None] | None = None
        self.debug = log.isEnabledFor(logging.DEBUG)  # --log-level debug: a line per request
        self.malformed = 0
        self.malformed_logged_at = -MALFORMED_LOG_INTERVAL_S

    def _tick(self, now: float) -> None:
        self.date = h1_response.http_date(now)

    def receive(self, data: bytes) -> None:
        """One message from Mongrel2."""
        try:
            message = parse_message(data)
        except MessageError as error:
            self.malformed_message(error, data)
            return
        key = (message.sender, message.conn_id)
        if type(message) is Disconnect:
            client = self.clients.get(key)
            if client is not None:
                client.lost()
            return
        if type(message) is Control:
            log.debug("mongrel2: %s notice for connection %s ignored", message.kind, key[1])
            return
        if self.debug:
            path = message.path[:200].decode("latin-1")  # type: ignore[union-attr]
            log.debug("mongrel2: request %s on connection %s", path, key[1].decode())
        client = self.clients.get(key)
        if client is None:
            client = self.clients[key] = Client(self, *key)
            self.deadlines.watched.add(client)
        client.received(message)  # type: ignore[arg-type]

    def malformed_message(self, error: Exception, data: bytes) -> None:
        """One line per message, at most a burst a minute: a broken peer cannot flood the log."""
        self.malformed += 1
        now = self.deadlines.now
        if now - self.malformed_logged_at >= MALFORMED_LOG_INTERVAL_S:
            self.malformed_logged_at = now
            log.warning(
                "mongrel2: dropped a malformed message (%s): %r%s",
                error,
                data[:80],
                f" ({self.malformed} so far)" if self.malformed > 1 else "",
            )

    def requests_ended(self, client: Client, count: int) -> None:
        if count <= 0:
            return
        self.in_hand -= count
        if self.on_request_done is not None:
            self.on_request_done(client.sender, client.conn_id, count)

    def forget(self, client: Client) -> None:
        if self.clients.get((client.sender, client.conn_id)) is client:
            del self.clients[(client.sender, client.conn_id)]
        self.deadlines.watched.discard(client)
        if self.on_quiet is not None:
            self.on_quiet()

    def quiet(self) -> bool:
        """True when no request is in flight or waiting behind one."""
        return not any(c.current is not None or c.backlog for c in self.clients.values())

    def confined(self, raw: bytes) -> Path | None:
        """The upload file Mongrel2 names, if it is a plain file directly in --upload-dir.

        The notice is a request header: Mongrel2 sets it for a real upload, but a client
        can send one itself. Only a regular file (not a link) whose real parent is the
        upload directory is taken, and only by the first client that names it.
        """
        if self.upload_dir is None:
            return None
        try:
            path = Path(os.fsdecode(raw))
            if not path.is_absolute() or path.parent.resolve() != self.upload_dir:
                return None
            info = path.lstat()
        except (OSError, ValueError):
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        return self.upload_dir / path.name
