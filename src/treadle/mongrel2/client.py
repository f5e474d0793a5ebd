"""One Mongrel2 connection id as a treadle connection: its requests, in order, and its bytes.

Reactor layer: every method runs in the reactor thread. A ``Client`` implements
http/connection.py, so http/exchange.py frames its responses exactly as for HTTP/1.1; it
collects what one reactor turn writes (a head leaves with its first chunk), answers its
requests in order (RFC 9112 §9.3.2), reads async uploads from the file Mongrel2 wrote, and
turns a disconnect notice into the exchange's connection_lost. channel.Handler routes
messages to clients; no ZeroMQ and no wsgi/* here.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from treadle.http import h1_response
from treadle.http.exchange import Exchange
from treadle.mongrel2.message import MessageError, Request, request_head, response_messages

if TYPE_CHECKING:
    from treadle.mongrel2.channel import Handler
    from treadle.wsgi.body import GrowingUpload

log = logging.getLogger("treadle")

CLOSE = b""  # a response message with no bytes: Mongrel2 closes the client's connection


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
        self.upload_body: GrowingUpload | None = None  # an upload the app reads as it grows

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
        if length is None:
            return  # read once done: until then no one can tell where the body ends
        # Its length is known: the app runs now and reads the file as Mongrel2 writes it.
        try:
            file = open(path, "rb")  # noqa: SIM115 - wsgi.input; the app's job closes it
        except OSError as error:
            log.warning(
                "mongrel2 connection %s: upload %s unreadable: %s", self.conn_id, path, error
            )
            self.drop_upload()
            self.refuse(400, "Bad Request: the uploaded body is gone")
            return
        body = handler.bodies.GrowingUpload(file, length, handler.upload_timeout_s)
        self.upload_body = body
        self.run(Exchange(self, head, body, length, body_complete=True))

    def upload_done(self, request: Request, done: bytes) -> None:
        handler = self.handler
        path, head, body = self.upload, self.upload_head, self.upload_body
        if body is not None:
            self.growing_upload_done(request, done, body)
            return
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

    def growing_upload_done(self, request: Request, done: bytes, body: GrowingUpload) -> None:
        """The upload the app is reading is whole: its last bytes are read, then the end."""
        path = self.upload
        self.drop_upload()
        if request.upload_start != done or self.handler.confined(done) != path:
            log.warning("mongrel2 connection %s: upload done for %r refused", self.conn_id, done)
            body.fail("the upload-done notice does not match its start")
            self.close()
            return
        body.complete()
        try:
            os.unlink(done)  # the app reads through its descriptor: nothing left on disk
        except OSError as error:
            log.warning("mongrel2: upload %r not removed: %s", done, error)
        if self.current is None:
            self.next_request()  # the app answered before the body was whole

    def stop_upload(self, reason: str) -> None:
        """An upload still arriving that this handler will not finish reading (it stops):
        503 if nothing was answered yet, else the client's connection is closed."""
        if self.upload is None:
            return
        body, current = self.upload_body, self.current
        self.drop_upload()
        if body is None:
            self.refuse(503, f"Service Unavailable: {reason}")  # never ran
            return
        if current is None:
            self.close()  # answered already; only the upload was still coming
            return
        body.fail(reason)
        current.record.cancel.set(reason)
        if current.plan is None:
            current.send_error(503, f"Service Unavailable: {reason}")
        else:
            current.abort(reason)

    def drop_upload(self, remove: bool = False) -> None:
        path, self.upload = self.upload, None
        self.upload_head = None
        self.upload_body = None
        if self.current is None:
            self.deadline = None  # the upload's; a running request keeps its own
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
            answered = self.upload_body is not None  # the app ran on it, and answered
            self.drop_upload(remove=True)
            if answered:
                self.close()  # its response is out: only the connection is left to end
            else:
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
        if self.upload is not None:
            # Answered while its upload still arrives: it is read to the end (the client
            # is still sending it), or dropped if it stops growing.
            self.deadline = self.handler.deadlines.now + self.handler.upload_timeout_s
            return
        self.next_request()

    def next_request(self) -> None:
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
        # An upload not yet run is a request in hand; one the app reads is ``current``.
        waiting = self.upload is not None and self.upload_body is None
        self.handler.requests_ended(self, len(self.backlog) + waiting)
        self.backlog.clear()
        if self.upload_body is not None:
            self.upload_body.fail("the client went away")
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
