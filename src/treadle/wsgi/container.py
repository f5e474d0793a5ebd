"""Runs one WSGI request in an app thread: environ, start_response, write, the iterable, close().

Thread-bridge layer: no sockets, no transports; the response leaves only through
wsgi/bridge.py. This is the one place that catches the app's broad exceptions: it
logs once with the request id and answers 500, or aborts the connection when the
head was already sent. close() on the app's iterable is always called.
"""

from __future__ import annotations

import itertools
import logging
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO, Protocol

from treadle import hardcancel
from treadle.cancel import set_current_request
from treadle.errors import RequestCancelled
from treadle.http.events import RequestHead
from treadle.http.h1_response import ERROR_HEADERS, INTERNAL_ERROR
from treadle.timing import RequestRecord
from treadle.wsgi.bridge import Headers, ResponseChannel, ResponseSink
from treadle.wsgi.environ import build_environ

log = logging.getLogger("treadle")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Exchange(ResponseSink, Protocol):
    """What the transport adapter hands the container for one request (read in the app thread)."""

    head: RequestHead
    body: Any  # wsgi.input
    content_length: int | None
    path_info: str
    scheme: str
    local: tuple[str, int] | None
    peer: tuple[str, int] | None
    tls_environ: dict[str, str] | None  # SSL_* keys over TLS, merged into the environ
    record: RequestRecord


class FileWrapper:
    """``wsgi.file_wrapper``: a regular file behind it is streamed by the reactor, not a thread."""

    def __init__(self, filelike: Any, block_size: int = 64 * 1024) -> None:
        self.filelike = filelike
        self.block_size = block_size
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> Any:
        read = self.filelike.read
        while True:
            block = read(self.block_size)
            if not block:
                return
            yield block


class ErrorStream:
    """``wsgi.errors``: lines written by the app go to the ``treadle.app`` logger."""

    _log = logging.getLogger("treadle.app")

    def write(self, text: str) -> int:
        text = text.rstrip("\n")
        if text:
            self._log.error("%s", text)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Nothing is buffered."""


_request_ids = itertools.count(1)


class WSGIContainer:
    """One per server: turns exchanges into pool jobs."""

    def __init__(
        self,
        app: WSGIApp,
        *,
        call_from_thread: Callable[..., Any],
        script_name: str = "",
        multiprocess: bool = False,
        hard_cancel: bool = False,
    ) -> None:
        self.app = app
        self.hard_cancel = hard_cancel  # --hard-cancel-after is set: app code runs gated
        self.call_from_thread = call_from_thread
        # An Outbox lets a whole response wait for the job's end to wake the reactor.
        self.call_later: Callable[..., Any] = getattr(call_from_thread, "later", call_from_thread)
        self.flush: Callable[[], None] | None = getattr(call_from_thread, "flush", None)
        self.script_name = script_name
        self.multiprocess = multiprocess
        self.errors = ErrorStream()
        # Requests an app thread is running now (added and removed by those threads;
        # read by the reactor for timeouts and hard cancels).
        self.running: set[RequestRecord] = set()
        # Requests whose response is out while their close() still runs (a graceful stop
        # waits for them); on_closed, when set, is called in the reactor as each ends.
        self.closing: set[RequestRecord] = set()
        self.on_closed: Callable[[], None] | None = None

    def job(self, exchange: Exchange) -> WSGIJob:
        """Called in the reactor thread for each request routed to the app."""
        exchange.record.request_id = next(_request_ids)
        return WSGIJob(self, exchange)


class WSGIJob:
    """One request's trip through an app thread; the pool calls run() or drop()."""

    __slots__ = (
        "container",
        "exchange",
        "record",
        "channel",
        "status",
        "headers",
        "head_sent",
        "result",
    )

    def __init__(self, container: WSGIContainer, exchange: Exchange) -> None:
        self.container = container
        self.exchange = exchange
        self.record = exchange.record
        self.channel = ResponseChannel(
            container.call_from_thread,
            exchange,
            exchange.record.cancel,
            call_later=container.call_later,
        )
        self.status: str | None = None
        self.headers: Headers = []
        self.head_sent = False
        self.result: Any = None  # the app's iterable, once it has returned one

    def drop(self) -> None:
        """Called in an app thread: the client left while the request was queued."""
        self.exchange.body.close()
        self.container.call_from_thread(self.exchange.abort, "cancelled while queued")

    def run(self) -> None:
        """Called in an app thread."""
        record = self.record
        exchange = self.exchange
        container = self.container
        record.started_at = time.perf_counter()
        record.thread = threading.current_thread().name
        set_current_request(record)
        running = container.running
        running.add(record)
        gate = hardcancel.gate() if container.hard_cancel else None
        try:
            if gate is not None:
                gate.enter(record)
            try:
                self.call_app()
            finally:
                while gate is not None:
                    # A hard cancel raised just before may land here, even before leave()'s
                    # first line: take it and leave again. Once leave() returns, none can.
                    try:
                        gate.leave(record)
                        break
                    except RequestCancelled:
                        continue
        except RequestCancelled:
            # A hard cancel that landed while the app's own failure was being handled: the
            # reactor had already answered or dropped the request when it raised it.
            log.info("request %d: hard-cancelled on its way out of the app", record.request_id)
        finally:
            flush = container.flush
            result = self.result
            if result is not None and hasattr(result, "close"):
                # PEP 3333 lets close() run after the response is sent; Django's runs the
                # request_finished handlers (database closes), which must not delay it.
                container.closing.add(record)
                if flush is not None:
                    flush()
                try:
                    result.close()
                except BaseException:  # noqa: BLE001 - the app boundary: log, carry on
                    log.exception("request %d: the app's close() failed", record.request_id)
                container.closing.discard(record)
                on_closed = container.on_closed
                if on_closed is not None:
                    container.call_from_thread(on_closed)
            set_current_request(None)
            running.discard(record)
            exchange.body.close()
            if flush is not None:
                flush()

    def call_app(self) -> None:
        """Run the app and hand its response over (its iterable is kept in self.result for
        close()). Called in an app thread; a hard cancel may land anywhere in here."""
        record = self.record
        exchange = self.exchange
        container = self.container
        try:
            environ = build_environ(
                exchange.head,
                url_scheme=exchange.scheme,
                local=exchange.local,
                peer=exchange.peer,
                script_name=container.script_name,
                path_info=exchange.path_info,
                multiprocess=container.multiprocess,
                wsgi_input=exchange.body,
                errors=container.errors,
                content_length=exchange.content_length,
            )
            environ["wsgi.file_wrapper"] = FileWrapper
            environ["treadle.cancelled"] = record.cancel
            environ["treadle.request_id"] = record.request_id
            if exchange.tls_environ is not None:
                environ.update(exchange.tls_environ)  # SSL_CLIENT_S_DN ... (docs/tls.md)
            result = self.result = container.app(environ, self.start_response)
            self.send(result)
        except RequestCancelled:
            log.info(
                "request %d %s %s cancelled: %s",
                record.request_id,
                record.method,
                record.path,
                record.cancel.reason or "client went away",
            )
            self.channel.abort("cancelled")
        except BaseException:  # noqa: BLE001 - the app boundary: 500 or abort, logged once
            self.fail()

    def fail(self) -> None:
        """Called in an app thread with the app's exception being handled."""
        record = self.record
        log.error(
            "request %d %s %s failed in the app",
            record.request_id,
            record.method,
            record.path,
            exc_info=sys.exc_info(),
        )
        if self.head_sent:
            self.channel.abort("app error after the response head was sent")
        else:
            self.head_sent = True
            status, body = INTERNAL_ERROR
            self.channel.respond(status, list(ERROR_HEADERS), body)

    def start_response(
        self, status: str, headers: Headers, exc_info: Any = None
    ) -> Callable[[bytes], None]:
        """PEP 3333 start_response. Called in an app thread."""
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response called a second time without exc_info")
        if type(status) is not str:
            raise TypeError(f"status must be str, not {type(status).__name__}")
        if type(headers) is not list:
            raise TypeError(f"headers must be a list, not {type(headers).__name__}")
        self.status = status
        self.headers = headers
        return self.write

    def write(self, data: bytes) -> None:
        """PEP 3333 write() callable, and the path of every streamed chunk. App thread."""
        if type(data) is not bytes:
            raise TypeError(f"response body chunks must be bytes, not {type(data).__name__}")
        if self.record.cancel.is_set():
            raise self.cancelled()
        if not self.head_sent:
            if self.status is None:
                raise AssertionError("write() before start_response()")
            self.head_sent = True
            self.channel.start(self.status, self.headers)
        if data:
            self.channel.write(data)

    def send(self, result: Any) -> None:
        """Hand the app's iterable to the reactor. App thread."""
        if not self.head_sent:
            kind = type(result)
            if kind is list or kind is tuple or getattr(result, "streaming", None) is False:
                # Known to be whole (a list, or a Django HttpResponse): one crossing.
                self.respond_whole(b"".join(result))
                return
            if kind is FileWrapper and self.send_file(result):
                return
        for chunk in result:
            if chunk:
                self.write(chunk)
            elif self.record.cancel.is_set():
                raise self.cancelled()
        if self.head_sent:
            self.channel.finish()
        else:
            self.respond_whole(b"")

    def respond_whole(self, body: bytes) -> None:
        """Head and whole body in one crossing. App thread."""
        self.require_status()
        self.head_sent = True
        self.channel.respond(self.status, self.headers, body)  # type: ignore[arg-type]

    def cancelled(self) -> RequestCancelled:
        return RequestCancelled(self.record.cancel.reason or "client went away")

    def require_status(self) -> None:
        if self.status is None:
            raise AssertionError("the app returned without calling start_response()")

    def send_file(self, wrapper: FileWrapper) -> bool:
        """Stream a regular file from the reactor. False to fall back to iteration."""
        try:
            fd = wrapper.filelike.fileno()
            info = os.fstat(fd)
            offset = wrapper.filelike.tell()
        except (AttributeError, OSError, ValueError):
            return False
        if not stat.S_ISREG(info.st_mode):
            return False
        self.require_status()
        length = info.st_size - offset
        for name, value in self.headers:
            if name.lower() == "content-length":
                try:
                    length = min(length, int(value))
                except ValueError:
                    return False
        # The reactor reads from its own descriptor: the app's close() closes the original.
        file: BinaryIO = os.fdopen(os.dup(fd), "rb")
        self.head_sent = True
        self.channel.send_file(self.status, self.headers, file, offset, max(length, 0))  # type: ignore[arg-type]
        return True
