"""Mongrel2's clients as treadle connections: messages in, exchanges out, responses back.

Reactor layer: every method runs in the reactor thread; no ZeroMQ here (transport.py
moves the bytes, ``send`` is injected) and no wsgi/* import (the dispatcher, the body
classes and the record type are injected by the composition root). Each Mongrel2
connection id is a ``Client`` that implements http/connection.py, so http/exchange.py
frames responses exactly as for HTTP/1.1 and the dispatcher, pool, limits, timeouts and
cancellation are the same. Requests on one client are answered in order (RFC 9112
§9.3.2); a disconnect notice cancels the one in flight as a closed socket would.
"""

from __future__ import annotations

import logging
import os
import stat
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from treadle.config import Limits, Timeouts
from treadle.deadlines import Deadlines
from treadle.http import h1_response
from treadle.http.exchange import Exchange
from treadle.mongrel2.message import (
    Control,
    Disconnect,
    MessageError,
    Request,
    parse_message,
    request_head,
    response_messages,
)

log = logging.getLogger("treadle")

CLOSE = b""  # a response message with no bytes: Mongrel2 closes the client's connection
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


class Client:
    """One Mongrel2 connection id: the Connection its exchanges talk to (http/connection.py)."""

    def __init__(self, handler: Handler, sender: bytes, conn_id: bytes) -> None:
        self.handler = handler
        self.sender = sender
        self.conn_id = conn_id
        self.current: Exchange | None = None
        self.backlog: deque[Request] = deque()
        self.pending: list[bytes] = []  # response bytes sent in this reactor turn
        self.flush_scheduled = False
        self.closed = False
        self.deadline: float | None = None
        self.scheme = "http"
        self.local: tuple[str, int] | None = None
        self.peer: tuple[str, int] | None = None
        self.tls_environ: dict[str, str] | None = None  # Mongrel2 ends TLS; it says only "https"
        self.script_name = ""  # the current request's, from its route's PATTERN
        self.upload: Path | None = None  # an upload announced, its request not run yet
        self.upload_size = -1
        self.upload_head: Any = None

    # -- requests ---------------------------------------------------------------

    def received(self, request: Request) -> None:
        done = request.upload_done
        continuation = self.upload is not None and done is not None
        if not continuation:
            self.handler.in_hand += 1  # an upload's done notice is the same request
        if self.closed:
            self.handler.requests_ended(self, 0 if continuation else 1)
            return
        if self.upload is not None and done is not None:
            self.upload_done(request, done)
        elif self.current is not None or self.upload is not None or self.backlog:
            self.backlog.append(request)  # answered in order, after the one in flight
        else:
            self.begin(request)

    def begin(self, request: Request) -> None:
        handler = self.handler
        try:
            head, origin = request_head(request)
        except MessageError as error:
            log.info("mongrel2 connection %s: 400 %s", self.conn_id.decode(), error)
            self.refuse(400, "Bad Request: not an HTTP/1.x request")
            return
        self.scheme, self.peer, self.script_name = origin.scheme, origin.peer, origin.script_name
        limits = handler.limits
        if len(head.headers) > limits.max_header_count:
            self.refuse(431, "Request Header Fields Too Large: too many header fields")
            return
        start = request.upload_start
        if start is not None or request.upload_done is not None:
            self.upload_started(request, head, start)
            return
        body_bytes = request.body
        if len(body_bytes) > limits.max_body_bytes:
            self.refuse(413, "Content Too Large: the request body is over the limit")
            return
        if body_bytes:
            body = handler.bodies.BufferedBody(limits.spool_threshold_bytes)
            body.feed(body_bytes)
            body.finish()
        else:
            body = handler.bodies.EMPTY_BODY
        self.run(Exchange(self, head, body, len(body_bytes) or None, body_complete=True))

    def run(self, exchange: Exchange) -> None:
        self.current = exchange
        self.start_app(exchange)

    def upload_started(self, request: Request, head: Any, start: bytes | None) -> None:
        """x-mongrel2-upload-start: Mongrel2 writes the body to a file, then says done."""
        handler = self.handler
        path = handler.confined(start) if start is not None else None
        if path is None or path in handler.claimed or request.upload_done is not None:
            # A forged notice (or a done without its start): the file is left alone.
            log.warning(
                "mongrel2 connection %s: 400 upload notice for %r refused (not a file of "
                "--upload-dir announced by Mongrel2)",
                self.conn_id.decode(),
                start,
            )
            self.refuse(400, "Bad Request: upload notice refused")
            return
        length = head.content_length
        if length is not None and length > handler.limits.max_body_bytes:
            self.refuse(413, "Content Too Large: the request body is over the limit")
            return
        handler.claimed.add(path)
        self.upload, self.upload_head, self.upload_size = path, head, _size(path)
        self.deadline = handler.deadlines.now + handler.upload_timeout_s

    def upload_done(self, request: Request, done: bytes) -> None:
        handler = self.handler
        path, head = self.upload, self.upload_head
        self.drop_upload()
        if path is None or request.upload_start != done or handler.confined(done) != path:
            log.warning(
                "mongrel2 connection %s: 400 upload done for %r refused", self.conn_id, done
            )
            self.refuse(400, "Bad Request: upload notice refused")
            return
        try:
            # Opened, then unlinked at once: the app reads through the descriptor, and
            # nothing is left on disk whatever happens to the request.
            file = open(path, "rb")  # noqa: SIM115 - wsgi.input; the app's job closes it
            os.unlink(path)
            length = os.fstat(file.fileno()).st_size
        except OSError as error:
            log.warning(
                "mongrel2 connection %s: upload %s unreadable: %s", self.conn_id, path, error
            )
            self.refuse(400, "Bad Request: the uploaded body is gone")
            return
        if length > handler.limits.max_body_bytes:
            file.close()
            self.refuse(413, "Content Too Large: the request body is over the limit")
            return
        self.run(Exchange(self, head, file, length, body_complete=True))

    def drop_upload(self, remove: bool = False) -> None:
        path, self.upload = self.upload, None
        self.upload_head = None
        self.deadline = None
        if path is not None:
            self.handler.claimed.discard(path)
            if remove:
                try:
                    path.unlink()
                    log.info("mongrel2: abandoned upload %s removed", path)
                except FileNotFoundError:
                    pass
                except OSError as error:
                    log.warning("mongrel2: abandoned upload %s not removed: %s", path, error)

    def refuse(self, status: int, message: str) -> None:
        """Answer a request that never reached the app, then close the client."""
        self.send(h1_response.error_response(status, message, date=self.handler.date))
        self.handler.requests_ended(self, 1)
        self.close()

    # -- deadlines ----------------------------------------------------------------

    def deadline_passed(self) -> None:
        handler = self.handler
        if self.current is not None:
            self.current.timed_out(handler.timeouts.request_timeout_s or 0.0)
        elif self.upload is not None:
            size = _size(self.upload)
            if size > self.upload_size:
                # Still growing: a slow upload, not an abandoned one.
                self.upload_size = size
                self.deadline = handler.deadlines.now + handler.upload_timeout_s
                return
            log.info(
                "mongrel2 connection %s: upload %s stopped growing for %.0f s",
                self.conn_id.decode(),
                self.upload,
                handler.upload_timeout_s,
            )
            self.drop_upload(remove=True)
            self.refuse(408, "Request Timeout: the upload stopped")

    # -- the Connection interface (http/connection.py) ----------------------------

    @property
    def date(self) -> bytes:
        return self.handler.date

    @property
    def draining(self) -> bool:
        # Mongrel2 keeps the client's connection; another handler serves its next request.
        return False

    @property
    def sending_paused(self) -> bool:
        # ZeroMQ queues what Mongrel2 has not taken yet (no high-water mark: a PUB socket
        # would drop messages past it); Mongrel2 itself buffers towards the client.
        return False

    def new_record(self, method: str, target: str, started: float) -> Any:
        return self.handler.records(method, target, started)

    def send(self, data: bytes) -> None:
        """Bytes for the client. A head and its first chunk leave as one message."""
        if self.closed or not data:
            return
        self.pending.append(data)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.handler.call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.pending:
            data = b"".join(self.pending)
            self.pending.clear()
            self.handler.send(response_messages(self.sender, [self.conn_id], data))

    def close(self) -> None:
        """Send what is pending, then have Mongrel2 close the client's connection."""
        if self.closed:
            return
        self.flush()
        self.closed = True
        self.handler.requests_ended(self, len(self.backlog))
        self.backlog.clear()
        self.handler.send(response_messages(self.sender, [self.conn_id], CLOSE))
        self.handler.forget(self)

    def start_app(self, exchange: Exchange) -> None:
        exchange.dispatching()
        timeout = self.handler.timeouts.request_timeout_s
        self.deadline = None if timeout is None else self.handler.deadlines.now + timeout
        self.handler.dispatch(exchange)

    def response_handed_over(self) -> None:
        self.deadline = None

    def exchange_done(self, exchange: Exchange, keep_alive: bool) -> None:
        if self.current is not exchange:
            return
        self.current = None
        self.deadline = None
        if not keep_alive:
            self.close()
            return
        self.flush()
        while self.backlog and self.current is None and self.upload is None and not self.closed:
            self.begin(self.backlog.popleft())
        if self.current is None and self.upload is None and not self.closed:
            self.handler.forget(self)

    def abort_exchange(self, exchange: Exchange) -> None:
        """The response cannot be completed: what it has not sent yet is dropped."""
        if self.current is exchange:
            self.current = None
        self.pending.clear()
        self.close()

    def exchange_finished(self, exchange: Exchange) -> None:
        self.handler.requests_ended(self, 1)
        hook = self.handler.on_finished
        if hook is not None:
            hook(exchange)

    # -- the client went away -----------------------------------------------------

    def lost(self) -> None:
        """Mongrel2's disconnect notice: as a closed socket for HTTP/1.1."""
        self.closed = True
        self.pending.clear()
        self.handler.requests_ended(self, len(self.backlog) + (self.upload is not None))
        self.backlog.clear()
        self.drop_upload()  # Mongrel2 removes a half-written upload itself
        current, self.current = self.current, None
        if current is not None:
            current.connection_lost()
        self.handler.forget(self)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1
