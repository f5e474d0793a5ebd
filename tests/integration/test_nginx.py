"""nginx in front of ``treadle serve``, over a unix socket and over TCP: the tested config.

Each test writes an nginx.conf (tests/integration/proxies.py, the same upstream block as
docs/deploy.md) with every path nginx writes in the test's directory, starts nginx in the
foreground on a free port of 127.0.0.1, waits until it accepts, and sends requests through
it: plain ones, a 100 MiB upload buffered by nginx and streamed through it, a response
streamed with ``proxy_buffering off``, kept-alive upstream connections, and a SIGHUP of a
supervised treadle under load with not one failed request.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Running, treadle_command
from tests.integration.proxies import NGINX, Load, Proxy, start_nginx

# The tests that need nginx skip in the behind_nginx fixture; the others run anyway.
pytestmark = pytest.mark.timeout(60)

APP = "tests.apps.proxied:app"
READY = re.compile(r"(\d+) workers ready at .+?\(supervisor pid \d+; worker pids ([\d, ]+)\)")
MIB = 1 << 20


class Site:
    """treadle behind nginx: where to send requests, and both processes."""

    def __init__(self, treadle: Running, nginx: Proxy, port: int) -> None:
        self.treadle = treadle
        self.nginx = nginx
        self.port = port

    def connect(self, timeout: float = 30.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def get(self, path: str = "/") -> dict:
        connection = self.connect()
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            assert response.status == 200, (response.status, body, self.nginx.log_text())
            return json.loads(body)
        finally:
            connection.close()


@pytest.fixture
def directory() -> Iterator[Path]:
    """A short directory (a unix socket path must fit in 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="trd-nginx-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def behind_nginx(directory: Path) -> Iterator[Callable[..., Site]]:
    if NGINX is None:
        pytest.skip("nginx absent (Debian: apt-get install nginx)")
    started: list[Running | Proxy] = []

    def start(transport: str, *args: str, workers: int = 1) -> Site:
        if transport == "unix":
            bind = f"unix:{directory}/treadle.sock"
        else:
            bind = "tcp:0:interface=127.0.0.1"
        command = treadle_command("serve", APP, "--bind", bind, "--workers", str(workers), *args)
        treadle = Running(command)
        started.append(treadle)
        if workers > 1:
            treadle.wait_for_line(lambda line: READY.search(line) is not None, 30)
        else:
            treadle.wait_ready()
        if transport == "unix":
            upstream = f"unix:{directory}/treadle.sock"
        else:
            match = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", treadle.output)
            assert match, treadle.output
            upstream = f"127.0.0.1:{match[1]}"
        nginx, port = start_nginx(directory, upstream)
        started.append(nginx)
        return Site(treadle, nginx, port)

    yield start
    for each in reversed(started):
        if isinstance(each, Proxy):
            each.stop()
        else:
            each.kill()


TRANSPORTS = ["unix", "tcp"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_plain_requests_through_nginx(behind_nginx, transport: str) -> None:
    site = behind_nginx(transport)
    connection = site.connect()
    seen = []
    for number in range(5):
        connection.request("GET", f"/page/{number}?q=1", headers={"Host": "example.test"})
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Server", "").startswith("nginx")
        info = json.loads(response.read())
        seen.append(info)
        assert info["path"] == f"/page/{number}"
        assert info["query"] == "q=1"
        assert info["host"] == "example.test"  # proxy_set_header Host $host
        assert info["forwarded_for"] == "127.0.0.1"  # $proxy_add_x_forwarded_for
    connection.close()
    assert {info["pid"] for info in seen} == {site.treadle.proc.pid}
    # HEAD: treadle's headers, no body (nginx would hang or fail on a body here).
    connection = site.connect()
    connection.request("HEAD", "/")
    response = connection.getresponse()
    assert response.status == 200 and response.read() == b""
    connection.close()
    assert " 502 " not in (site.nginx.directory / "access.log").read_text()


def upload_blocks(total: int, digest: hashlib._Hash) -> Iterator[bytes]:
    """``total`` bytes of a varying pattern in 1 MiB blocks, hashed as they are sent."""
    for number in range(total // MIB):
        block = (number.to_bytes(4, "big") * (MIB // 4))[:MIB]
        digest.update(block)
        yield block


def send_upload(site: Site, path: str, total: int, chunked: bool) -> tuple[int, dict, str]:
    digest = hashlib.sha256()
    connection = site.connect(timeout=50)
    headers = {"Content-Type": "application/octet-stream"}
    if not chunked:
        headers["Content-Length"] = str(total)
    try:
        connection.request(
            "POST", path, body=upload_blocks(total, digest), headers=headers, encode_chunked=chunked
        )
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    info = json.loads(body) if response.status == 200 else {"body": body[:200]}
    return response.status, info, digest.hexdigest()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("transport", "path", "chunked"),
    [
        ("unix", "/upload", False),  # nginx reads the whole body to disk, then sends it
        ("tcp", "/upload", True),  # chunked from the client: nginx sends a Content-Length
        ("unix", "/upload-unbuffered", False),  # proxy_request_buffering off: streamed
        ("tcp", "/upload-unbuffered", True),  # streamed and chunked all the way to treadle
    ],
)
def test_a_100_mib_upload_through_nginx(behind_nginx, transport, path, chunked) -> None:
    site = behind_nginx(transport)
    status, info, sha256 = send_upload(site, path, 100 * MIB, chunked)
    assert status == 200, (info, site.treadle.output[-2000:])
    # Exactly --max-body's default (100 MiB) is allowed, byte for byte.
    assert info["length"] == 100 * MIB
    assert info["sha256"] == sha256
    assert info["content_length"] == str(100 * MIB)


@pytest.mark.parametrize("path", ["/upload", "/upload-unbuffered"])
def test_an_upload_over_max_body_is_413_through_nginx(behind_nginx, path) -> None:
    site = behind_nginx("unix", "--max-body", "1M")
    status, info, _ = send_upload(site, path, 2 * MIB, chunked=False)
    assert status == 413, info
    # treadle refused it, not nginx (whose client_max_body_size is 200m here).
    assert b"nginx" not in info["body"], info
    site.treadle.wait_for_line("request body too large")
    # treadle keeps serving through nginx afterwards.
    assert site.get()["pid"] == site.treadle.proc.pid


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_streamed_response_arrives_chunk_by_chunk(behind_nginx, directory, transport) -> None:
    site = behind_nginx(transport)
    fifo = directory / "acks"
    os.mkfifo(fifo)
    # Held open read-write: the app's open for reading never blocks, and each byte
    # written is one acknowledgement that a chunk arrived here.
    acks = os.open(fifo, os.O_RDWR)
    try:
        connection = site.connect(timeout=20)
        connection.request("GET", f"/stream?fifo={fifo}&chunks=4")
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Transfer-Encoding") == "chunked"
        received = b""
        for number in range(4):
            expected = b"chunk %d\n" % number
            # The app yields the next chunk only after this acknowledgement: a proxy that
            # held the response back until it ended would time out here.
            while len(received) < len(expected):
                piece = response.read1(64)
                assert piece, f"stream ended after {received!r}"
                received += piece
            assert received == expected
            received = b""
            os.write(acks, b"+")
        assert response.read() == b""
        connection.close()
    finally:
        os.close(acks)


def test_nginx_keeps_upstream_connections_alive(behind_nginx) -> None:
    # Believing no proxy header: REMOTE_PORT stays the port of nginx's upstream connection.
    site = behind_nginx("tcp", "--forwarded-allow-ips", "")
    # One client after another: each is a new nginx connection, but nginx's upstream
    # connection (keepalive 32) is reused, so treadle sees the same peer port every time.
    ports = {site.get()["peer_port"] for _ in range(20)}
    assert len(ports) == 1 and "" not in ports, ports
    # And nginx logged no upstream error (a kept-alive connection closed under it).
    assert "upstream" not in site.nginx.log_text()


def ready_pids(treadle: Running, count: int, after: int = 0) -> set[int]:
    """Worker pids of the first ready line for ``count`` workers past the first ``after`` lines."""
    earlier = set(treadle.lines[:after])

    def fresh_ready(line: str) -> bool:
        match = READY.search(line)
        return match is not None and int(match[1]) == count and line not in earlier

    match = READY.search(treadle.wait_for_line(fresh_ready, 40))
    assert match is not None
    return {int(pid) for pid in match[2].split(", ")}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("transport", "method"), [("unix", "GET"), ("tcp", "GET"), ("unix", "POST")]
)
def test_sighup_under_load_through_nginx_fails_no_request(behind_nginx, transport, method) -> None:
    site = behind_nginx(transport, "--graceful-timeout", "10", workers=2)
    treadle = site.treadle
    old = ready_pids(treadle, 2)
    # nginx retries a GET on a new upstream connection when a kept-alive one fails, but
    # never a POST (not idempotent): POSTs fail unless treadle closes no connection
    # under a request nginx is sending.
    body = b"name=value&other=1" if method == "POST" else None
    load = Load("127.0.0.1", site.port, clients=8, body=body)
    try:
        load.wait_for(old, every=False)
        for _ in range(2):
            mark = len(treadle.lines)
            treadle.proc.send_signal(signal.SIGHUP)
            new = ready_pids(treadle, 2, after=mark)
            assert not new & old
            for pid in old:
                treadle.wait_for_line(f"worker {pid} stopped (exit status 0)", 30)
            load.wait_for(new, every=False)  # not each: nginx keeps few connections
            load.wait_answered(200)
            old = new
    finally:
        load.finish()
    assert load.failures == 0, load.summary()
    assert load.answered >= 500, load.summary()
    access = (site.nginx.directory / "access.log").read_text()
    assert " 502 " not in access and " 504 " not in access
    assert treadle.stop(signal.SIGTERM, timeout=30) == 0


def test_nginx_answers_502_when_treadle_is_gone(behind_nginx) -> None:
    """The control for the test above: a dead upstream does show up as 502 at the client."""
    site = behind_nginx("unix")
    assert site.treadle.stop(signal.SIGTERM, timeout=30) == 0
    connection = site.connect()
    connection.request("GET", "/")
    assert connection.getresponse().status == 502
    connection.close()


def test_a_client_still_sending_a_refused_body_reads_the_413(serve) -> None:
    """The cause of a 502 instead of treadle's 413 behind nginx, seen without nginx.

    treadle answers 413 as soon as the head says the body is too large. If it then closed
    at once with the body still arriving, its kernel would reset the connection, and a
    client busy sending (http.client, requests, nginx) sees the reset instead of the 413.
    """
    server = serve(APP, "--max-body", "1M")
    total = 32 * MIB  # far more than the kernel buffers: the client is still sending
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    digest = hashlib.sha256()
    connection.request(
        "POST", "/upload", body=upload_blocks(total, digest), headers={"Content-Length": str(total)}
    )
    response = connection.getresponse()
    assert response.status == 413
    assert response.getheader("Connection") == "close"
    connection.close()
    # And the server serves on.
    again = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    again.request("GET", "/")
    assert again.getresponse().status == 200
    again.close()


def test_a_lingering_connection_does_not_hold_up_a_stop(serve) -> None:
    """After a 413 treadle reads what the client still sends; a SIGTERM ends that at once."""
    server = serve(APP, "--max-body", "1M")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 33554432\r\n\r\n")
        sock.sendall(b"x" * MIB)
        answer = b""
        while chunk := sock.recv(65536):  # the 413, then treadle's FIN (it half-closed)
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 413 "), answer
        sock.sendall(b"x" * MIB)  # still read and dropped: no reset
        began = time.monotonic()
        assert server.stop(signal.SIGTERM, timeout=30) == 0
        # Not the 5 s a lingering connection could otherwise hold the exit for.
        assert time.monotonic() - began < 3.5, server.output


def test_a_sighup_keeps_the_shared_unix_socket_accepting(directory) -> None:
    """The unix-socket reload behind nginx, seen without nginx: after the old workers
    stopped, the socket still accepts (a stopping worker used to shut it down for all)."""
    path = directory / "treadle.sock"
    command = treadle_command("serve", APP, "--bind", f"unix:{path}", "--workers", "2")
    treadle = Running(command)
    try:
        old = ready_pids(treadle, 2)
        mark = len(treadle.lines)
        treadle.proc.send_signal(signal.SIGHUP)
        new = ready_pids(treadle, 2, after=mark)
        for pid in old:
            treadle.wait_for_line(f"worker {pid} stopped (exit status 0)", 30)
        for _ in range(4):
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(10)
                sock.connect(str(path))
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 "), answer
            assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["pid"] in new
        assert treadle.stop(signal.SIGTERM, timeout=30) == 0
    finally:
        treadle.kill()
