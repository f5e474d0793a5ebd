"""Mongrel2's clients driven in memory: messages in, the messages treadle publishes out.

Reactor tier: no ZeroMQ, no threads. channel.Handler gets Mongrel2's request messages as
bytes, the real dispatcher, WSGI container and exchange run the app (inline, or held to
run later), and the test reads what would be published back to Mongrel2.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock

from treadle.config import Config
from treadle.deadlines import Deadlines
from treadle.dispatch import Dispatcher
from treadle.mongrel2.channel import Handler
from treadle.mongrel2.message import request_message
from treadle.timing import RequestRecord
from treadle.wsgi import body as bodies
from treadle.wsgi.container import WSGIContainer

SENDER = b"f400bf85-4538-4f7a-8908-67e313d515c2"


def environ_app(environ, start_response):
    keys = (
        "SCRIPT_NAME",
        "PATH_INFO",
        "QUERY_STRING",
        "REMOTE_ADDR",
        "SERVER_NAME",
        "SERVER_PORT",
        "wsgi.url_scheme",
        "CONTENT_LENGTH",
        "HTTP_HOST",
    )
    body = "\n".join(f"{key}={environ.get(key)}" for key in keys).encode()
    body += b"\nbody=" + environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


def streaming(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first"
    yield b"second"


class Harness:
    def __init__(self, app: Any = environ_app, run_inline: bool = True, **settings: Any):
        self.clock = MemoryReactorClock()
        self.config = Config.from_settings(settings)
        self.deadlines = Deadlines(self.clock)
        self.deadlines.start()
        self.run_inline = run_inline
        self.held: list[Any] = []
        self.sent: list[bytes] = []
        self.containers: dict[str, WSGIContainer] = {}
        self.app = app
        self.handler = Handler(
            send=self.sent.extend,
            call_soon=lambda f: self.clock.callLater(0, f),
            deadlines=self.deadlines,
            dispatch=Dispatcher(submit=self.submit),
            bodies=bodies,
            records=RequestRecord,
            limits=self.config.limits,
            timeouts=self.config.timeouts,
        )

    def submit(self, exchange) -> bool:
        # As serve.Mongrel2Server does: the route's prefix is the container's SCRIPT_NAME.
        script_name = exchange.connection.script_name
        exchange.path_info = exchange.path_info[len(script_name) :]
        container = self.containers.setdefault(
            script_name,
            WSGIContainer(self.app, call_from_thread=lambda f, *a: f(*a), script_name=script_name),
        )
        job = container.job(exchange)
        if self.run_inline:
            job.run()
        else:
            self.held.append(job)
        return True

    def receive(self, conn_id: bytes = b"7", body: bytes = b"", **headers: Any) -> None:
        fields = {
            b"PATH": b"/app/items",
            b"x-forwarded-for": b"10.1.2.3",
            b"host": b"example.com:6767",
            b"METHOD": b"GET",
            b"VERSION": b"HTTP/1.1",
            b"URI": b"/app/items?q=%20x",
            b"QUERY": b"q=%20x",
            b"PATTERN": b"/app",
            b"URL_SCHEME": b"https",
            b"REMOTE_ADDR": b"10.1.2.3",
        }
        for name, value in headers.items():
            key = name.replace("_", "-").encode()
            key = (
                key.upper()
                if key.upper() == key.replace(b"-", b"_").upper() and name.isupper()
                else key
            )
            if value is None:
                fields.pop(key, None)
            else:
                fields[key] = value
        self.handler.receive(request_message(SENDER, conn_id, fields[b"PATH"], fields, body))

    def take(self) -> list[bytes]:
        self.clock.advance(0)
        sent, self.sent[:] = list(self.sent), []
        return sent


def payload(message: bytes, conn_id: bytes = b"7") -> bytes:
    prefix = SENDER + b" %d:%s, " % (len(conn_id), conn_id)
    assert message.startswith(prefix), message[:80]
    return message[len(prefix) :]


def test_get_environ_and_one_message() -> None:
    h = Harness()
    h.receive()
    [message] = h.take()
    response = payload(message)
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Length: " in response and b"Date: " in response
    body = response.split(b"\r\n\r\n", 1)[1].decode()
    assert body.splitlines() == [
        "SCRIPT_NAME=/app",
        "PATH_INFO=/items",
        "QUERY_STRING=q=%20x",
        "REMOTE_ADDR=10.1.2.3",
        "SERVER_NAME=example.com",
        "SERVER_PORT=6767",
        "wsgi.url_scheme=https",
        "CONTENT_LENGTH=None",
        "HTTP_HOST=example.com:6767",
        "body=",
    ]
    assert h.handler.clients == {}  # idle clients are not kept
    assert h.handler.in_hand == 0  # what a broker is told: every request ended


def test_post_body_reaches_the_app() -> None:
    h = Harness()
    h.receive(body=b"a=1&b=2", METHOD=b"POST", **{"content-length": b"7"})
    [message] = h.take()
    assert payload(message).endswith(b"CONTENT_LENGTH=7\nHTTP_HOST=example.com:6767\nbody=a=1&b=2")


def test_streamed_http11_is_chunked_head_coalesced_with_first_chunk() -> None:
    h = Harness(streaming, run_inline=False)
    h.receive()
    job = h.held.pop()
    job.run()
    messages = [payload(m) for m in h.take()]
    # The head never leaves alone: it goes with the first chunk (one message here, as the
    # whole stream was written in one reactor turn).
    assert len(messages) >= 1
    whole = b"".join(messages)
    head, body = whole.split(b"\r\n\r\n", 1)
    assert b"Transfer-Encoding: chunked" in head
    assert body == b"5\r\nfirst\r\n6\r\nsecond\r\n0\r\n\r\n"
    assert messages[0] != head + b"\r\n\r\n"
    assert b"" not in messages  # keep-alive: no close message


def test_streamed_http10_is_close_delimited() -> None:
    h = Harness(streaming)
    h.receive(VERSION=b"HTTP/1.0")
    messages = [payload(m) for m in h.take()]
    assert messages[-1] == b""  # Mongrel2 closes the client: that ends the body
    whole = b"".join(messages)
    head, body = whole.split(b"\r\n\r\n", 1)
    assert b"chunked" not in head.lower() and b"content-length" not in head.lower()
    assert body == b"firstsecond"


def test_head_has_no_body_and_no_chunking() -> None:
    h = Harness(streaming)
    h.receive(METHOD=b"HEAD")
    messages = [payload(m) for m in h.take()]
    whole = b"".join(messages)
    assert whole.endswith(b"\r\n\r\n")
    assert b"first" not in whole and b"chunked" not in whole.lower()


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_no_body_statuses_are_not_chunked(status: str) -> None:
    def app(environ, start_response):
        start_response(status, [])
        yield b""

    h = Harness(app)
    h.receive()
    whole = b"".join(payload(m) for m in h.take())
    assert whole.startswith(b"HTTP/1.1 " + status.encode())
    assert b"chunked" not in whole.lower()


def test_requests_on_one_client_are_answered_in_order() -> None:
    h = Harness(environ_app, run_inline=False)
    h.receive(PATH=b"/app/a", URI=b"/app/a")
    h.receive(PATH=b"/app/b", URI=b"/app/b")
    assert len(h.held) == 1  # the second waits for the first's response
    h.held.pop().run()
    first = h.take()
    assert b"PATH_INFO=/a" in first[0]
    assert len(h.held) == 1
    h.held.pop().run()
    assert b"PATH_INFO=/b" in h.take()[0]
    assert h.handler.in_hand == 0


def test_disconnect_cancels_the_request_and_nothing_is_sent() -> None:
    h = Harness(run_inline=False)
    h.receive(conn_id=b"9")
    job = h.held.pop()
    notice = b'{"type":"disconnect"}'
    h.handler.receive(request_message(SENDER, b"9", b"@*", {b"METHOD": b"JSON"}, notice))
    assert job.record.cancel.is_set()
    job.run()  # a queued job whose client left: dropped without running the app
    assert h.take() == []
    assert h.handler.clients == {}
    assert h.handler.in_hand == 0


def test_malformed_messages_are_logged_once_and_dropped(caplog: Any) -> None:
    h = Harness()
    with caplog.at_level(logging.WARNING, logger="treadle"):
        h.handler.receive(b"garbage")
        h.handler.receive(b"more garbage that is not a message")
    assert len([r for r in caplog.records if "malformed" in r.getMessage()]) == 1
    assert h.take() == []
    h.receive()
    assert payload(h.take()[0]).startswith(b"HTTP/1.1 200 OK")


def test_not_http_gets_400_and_close() -> None:
    h = Harness()
    h.receive(VERSION=None)
    messages = [payload(m) for m in h.take()]
    assert messages[0].startswith(b"HTTP/1.1 400 ")
    assert messages[-1] == b""


def test_body_over_the_limit_gets_413() -> None:
    h = Harness(max_body_bytes=4)
    h.receive(body=b"12345", METHOD=b"POST")
    messages = [payload(m) for m in h.take()]
    assert messages[0].startswith(b"HTTP/1.1 413 ")
    assert messages[-1] == b""


def test_request_timeout_gives_504() -> None:
    h = Harness(run_inline=False, request_timeout_s=2.0)
    h.receive()
    job = h.held.pop()
    h.clock.advance(1.0)
    h.clock.advance(1.0)
    h.clock.advance(1.0)
    messages = [payload(m) for m in h.take()]
    assert messages[0].startswith(b"HTTP/1.1 504 ")
    assert messages[-1] == b""
    assert job.record.cancel.is_set()


# -- async uploads ---------------------------------------------------------------------


def upload_harness(tmp_path: Path, **settings: Any) -> tuple[Harness, Path]:
    upload_dir = tmp_path / "up"
    upload_dir.mkdir()
    h = Harness(**settings)
    h.handler.upload_dir = upload_dir.resolve()
    h.handler.upload_timeout_s = 5.0
    return h, upload_dir


def run_in_thread(job: Any) -> threading.Thread:
    thread = threading.Thread(target=job.run, daemon=True)
    thread.start()
    return thread


def test_an_upload_of_known_length_is_read_while_it_grows(tmp_path: Path) -> None:
    h, upload_dir = upload_harness(tmp_path, run_inline=False)
    file = upload_dir / "m2.AbC123"
    file.write_bytes(b"hello")
    start = {"x-mongrel2-upload-start": str(file).encode(), "content-length": b"11"}
    h.receive(METHOD=b"POST", **start)
    (job,) = h.held  # the app runs before Mongrel2 says done
    thread = run_in_thread(job)
    thread.join(0.2)
    assert thread.is_alive()  # its read waits for the rest
    with file.open("ab") as growing:
        growing.write(b" world")
    thread.join(10)
    assert not thread.is_alive()
    response = payload(h.take()[0])
    assert response.endswith(b"CONTENT_LENGTH=11\nHTTP_HOST=example.com:6767\nbody=hello world")
    h.receive(METHOD=b"POST", **start, **{"x-mongrel2-upload-done": str(file).encode()})
    assert not file.exists()  # the app read through its descriptor; removed once done
    assert h.take() == []  # the done notice is the same request: nothing more to answer
    assert h.handler.in_hand == 0 and not h.handler.clients


def test_an_upload_without_length_is_read_once_done(tmp_path: Path) -> None:
    h, upload_dir = upload_harness(tmp_path)
    file = upload_dir / "m2.AbC123"
    file.write_bytes(b"")
    start = {"x-mongrel2-upload-start": str(file).encode()}
    h.receive(METHOD=b"POST", **start)
    assert h.take() == []  # nothing to answer until Mongrel2 says done
    file.write_bytes(b"hello world")
    h.receive(METHOD=b"POST", **start, **{"x-mongrel2-upload-done": str(file).encode()})
    response = payload(h.take()[0])
    assert response.endswith(b"CONTENT_LENGTH=11\nHTTP_HOST=example.com:6767\nbody=hello world")
    assert not file.exists()  # read through its descriptor, removed at once
    assert h.handler.in_hand == 0  # start and done were one request


def test_a_disconnect_ends_a_read_waiting_for_the_upload(tmp_path: Path) -> None:
    h, upload_dir = upload_harness(tmp_path, run_inline=False)
    file = upload_dir / "m2.AbC123"
    file.write_bytes(b"hel")
    h.receive(
        METHOD=b"POST", **{"x-mongrel2-upload-start": str(file).encode(), "content-length": b"11"}
    )
    (job,) = h.held
    thread = run_in_thread(job)
    thread.join(0.2)
    assert thread.is_alive()
    disconnect = request_message(
        SENDER, b"7", b"@*", {b"METHOD": b"JSON"}, b'{"type":"disconnect"}'
    )
    h.handler.receive(disconnect)
    thread.join(5)  # woken at once, long before the 5 s stall limit would end it
    assert not thread.is_alive()
    assert job.exchange.record.cancel.is_set()
    assert h.handler.in_hand == 0 and not h.handler.clients and not h.handler.claimed


@pytest.mark.parametrize(
    "forged", ["/etc/passwd", "{dir}/../secret", "{dir}/link", "relative/m2.x", "{dir}/sub/f"]
)
def test_forged_upload_paths_get_400_and_the_file_is_left_alone(
    tmp_path: Path, forged: str
) -> None:
    h, upload_dir = upload_harness(tmp_path)
    secret = tmp_path / "secret"
    secret.write_bytes(b"do not touch")
    (upload_dir / "link").symlink_to(secret)
    (upload_dir / "sub").mkdir()
    (upload_dir / "sub" / "f").write_bytes(b"x")
    path = forged.format(dir=upload_dir).encode()
    h.receive(METHOD=b"POST", **{"x-mongrel2-upload-start": path, "x-mongrel2-upload-done": path})
    messages = [payload(m) for m in h.take()]
    assert messages[0].startswith(b"HTTP/1.1 400 ")
    assert messages[-1] == b""
    assert secret.read_bytes() == b"do not touch"
    assert (upload_dir / "sub" / "f").exists()
    assert Path("/etc/passwd").exists()


def test_a_done_without_its_start_is_refused(tmp_path: Path) -> None:
    h, upload_dir = upload_harness(tmp_path)
    file = upload_dir / "m2.other"
    file.write_bytes(b"someone else's upload")
    path = str(file).encode()
    h.receive(METHOD=b"POST", **{"x-mongrel2-upload-start": path, "x-mongrel2-upload-done": path})
    assert payload(h.take()[0]).startswith(b"HTTP/1.1 400 ")
    assert file.read_bytes() == b"someone else's upload"


def test_without_upload_dir_upload_notices_get_400(tmp_path: Path) -> None:
    h = Harness()
    file = tmp_path / "m2.x"
    file.write_bytes(b"")
    h.receive(METHOD=b"POST", **{"x-mongrel2-upload-start": str(file).encode()})
    assert payload(h.take()[0]).startswith(b"HTTP/1.1 400 ")
    assert file.exists()


def test_an_abandoned_upload_times_out_and_is_removed(tmp_path: Path) -> None:
    h, upload_dir = upload_harness(tmp_path)
    file = upload_dir / "m2.slow"
    file.write_bytes(b"")
    h.receive(METHOD=b"POST", **{"x-mongrel2-upload-start": str(file).encode()})
    for _ in range(4):
        h.clock.advance(1.0)
    file.write_bytes(b"growing")  # a slow upload is not abandoned
    for _ in range(5):
        h.clock.advance(1.0)
    assert file.exists() and h.take() == []
    for _ in range(2):  # five seconds without growth
        h.clock.advance(1.0)
    messages = [payload(m) for m in h.take()]
    assert messages[0].startswith(b"HTTP/1.1 408 ")
    assert messages[-1] == b""
    assert not file.exists()
    assert os.listdir(upload_dir) == []
    assert h.handler.in_hand == 0
