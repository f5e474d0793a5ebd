"""HTTP/2 over TLS (ALPN h2) against the real server: curl, nghttp and an h2-library client.

The server runs on ``ssl:0`` with a CA and certificate made by the test. Requests, bodies,
static files, flow control (big transfers through a small window, and an app held back
by a client that opens no window) and one environ per stream.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Running
from tests.integration.h2client import H2Client
from tests.integration.tlscerts import Certs, make_certs

DEADLINE_S = 30.0
ADDRESS = re.compile(r"https://127\.0\.0\.1:(\d+)")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def serve_h2(serve, certs: Certs) -> Callable[..., Running]:  # noqa: ANN001
    """``serve_h2("tests.apps.echo:app", *args)`` -> a server on ssl:0; .port is its port."""

    def start(target: str, *args: str) -> Running:
        bind = f"ssl:0:interface=127.0.0.1:privateKey={certs.key}:certKey={certs.cert}"
        server = serve(target, *args, bind=bind)
        server.port = int(ADDRESS.search(server.wait_for_line("Listening at:"))[1])  # type: ignore[index]
        return server

    return start


def need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.skip(f"{program} is not installed (apt-get install curl nghttp2-client)")
    return path


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=DEADLINE_S)


# -- real clients ------------------------------------------------------------------------


def test_curl_with_default_options_uses_http2_over_tls(serve_h2, certs: Certs) -> None:
    server = serve_h2("tests.apps.echo:app")
    url = f"https://127.0.0.1:{server.port}/p%C3%A9?q=1"
    result = run([need("curl"), "-sS", "-v", "--cacert", str(certs.ca), url])
    assert result.returncode == 0, result.stderr
    assert "ALPN: server accepted h2" in result.stderr or "ALPN, server accepted to use h2" in (
        result.stderr
    )
    assert "using HTTP/2" in result.stderr
    assert re.search(r"< HTTP/2 200", result.stderr)
    environ = json.loads(result.stdout)
    assert environ["SERVER_PROTOCOL"] == "HTTP/2"
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["PATH_INFO"] == "/p\u00c3\u00a9" and environ["QUERY_STRING"] == "q=1"
    assert environ["HTTP_HOST"] == f"127.0.0.1:{server.port}"
    assert environ["SERVER_PORT"] == str(server.port)
    assert environ["CONTENT_LENGTH"] is None


def test_curl_post_and_head_over_http2(serve_h2, certs: Certs, tmp_path: Path) -> None:
    server = serve_h2("tests.apps.echo:app")
    url = f"https://127.0.0.1:{server.port}/form"
    result = run([need("curl"), "-sS", "--cacert", str(certs.ca), "-d", "a=1&b=2", url])
    assert result.returncode == 0, result.stderr
    environ = json.loads(result.stdout)
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert environ["CONTENT_LENGTH"] == "7" and environ["body_head"] == "a=1&b=2"
    head = run([need("curl"), "-sS", "-I", "--cacert", str(certs.ca), url])
    assert head.returncode == 0, head.stderr
    assert head.stdout.startswith("HTTP/2 200")
    assert "content-length:" in head.stdout.lower()


def test_nghttp_get_and_post(serve_h2, tmp_path: Path) -> None:
    nghttp = need("nghttp")
    server = serve_h2("tests.apps.echo:app")
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"n" * 100_000)
    url = f"https://127.0.0.1:{server.port}/ng"
    got = run([nghttp, "-v", url])
    assert got.returncode == 0, got.stderr
    assert ":status: 200" in got.stdout
    assert '"SERVER_PROTOCOL": "HTTP/2"' in got.stdout
    posted = run([nghttp, "-d", str(upload), url])
    assert posted.returncode == 0, posted.stderr
    assert json.loads(posted.stdout)["body_length"] == 100_000


# -- the h2 library as a client ------------------------------------------------------------


def test_concurrent_streams_each_get_their_own_environ(serve_h2, certs: Certs) -> None:
    server = serve_h2("tests.apps.echo:app")
    with H2Client(server.port, tls_ca=certs.ca) as client:
        sids = [
            client.request("POST", f"/s{i}", body=b"x" * i, headers=[("x-test", str(i))])
            for i in range(1, 21)
        ]
        for i, sid in enumerate(sids, start=1):
            stream = client.response(sid)
            assert stream.status == 200
            environ = json.loads(stream.body)
            assert environ["PATH_INFO"] == f"/s{i}"
            assert environ["HTTP_X_TEST"] == str(i)
            assert environ["body_length"] == i
            assert environ["SERVER_PROTOCOL"] == "HTTP/2"


def test_a_streamed_response_without_length(serve_h2, certs: Certs) -> None:
    server = serve_h2("tests.apps.stream:app")
    with H2Client(server.port, tls_ca=certs.ca) as client:
        stream = client.get("/?chunks=3000&size=1000")  # past the high-water mark: streamed
        assert stream.status == 200
        assert b"content-length" not in stream.headers
        assert bytes(stream.body) == (b"x" * 999 + b"\n") * 3000


def test_head_has_the_length_and_no_body(serve_h2, certs: Certs) -> None:
    server = serve_h2("tests.apps.big:whole")
    with H2Client(server.port, tls_ca=certs.ca) as client:
        stream = client.response(client.request("HEAD", "/"))
        assert stream.status == 200
        assert stream.headers[b"content-length"] == b"1048576"
        assert stream.body == b""


def test_static_files_over_http2(serve_h2, certs: Certs, tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    small = os.urandom(5000)
    large = os.urandom(3 * 1024 * 1024)  # past the in-memory limit: a producer streams it
    (tmp_path / "site" / "small.bin").write_bytes(small)
    (tmp_path / "site" / "large.bin").write_bytes(large)
    server = serve_h2("tests.apps.echo:app", "--static", f"/s={tmp_path / 'site'}")
    with H2Client(server.port, tls_ca=certs.ca) as client:
        one = client.get("/s/small.bin")
        two = client.get("/s/large.bin")
        ranged = client.response(
            client.request("GET", "/s/large.bin", headers=[("range", "bytes=10-19")])
        )
    assert one.status == 200 and bytes(one.body) == small
    assert two.status == 200 and bytes(two.body) == large
    assert two.headers[b"content-length"] == str(len(large)).encode()
    assert ranged.status == 206 and bytes(ranged.body) == large[10:20]


@pytest.mark.parametrize(
    "target",
    ["tests.apps.big:stream", "tests.apps.files:app"],
    ids=["streamed by the app", "file_wrapper by the reactor"],
)
def test_big_downloads_through_a_small_window(serve_h2, certs: Certs, target: str) -> None:
    server = serve_h2(target)
    with H2Client(server.port, tls_ca=certs.ca, window=16 * 1024) as client:
        stream = client.get("/?mib=12")
    assert stream.status == 200
    assert len(stream.body) == 12 * 1024 * 1024
    assert stream.body.count(stream.body[:1]) == len(stream.body)


def test_a_big_upload_with_the_servers_window(serve_h2, certs: Certs) -> None:
    server = serve_h2("tests.apps.echo:app")
    body = os.urandom(1024 * 1024) * 12  # 12 MiB: spooled to disk on the way
    with H2Client(server.port, tls_ca=certs.ca, window=16 * 1024) as client:
        sid = client.request("POST", "/up", headers=[("content-length", str(len(body)))], end=False)
        client.send_body(sid, body)
        stream = client.response(sid)
    environ = json.loads(stream.body)
    assert environ["body_length"] == len(body)
    assert environ["body_head"] == body[:64].decode("latin-1")
    assert environ["CONTENT_LENGTH"] == str(len(body))


def test_an_upload_without_length_is_counted(serve_h2, certs: Certs) -> None:
    server = serve_h2("tests.apps.echo:app")
    body = b"abc" * 100_000
    with H2Client(server.port, tls_ca=certs.ca) as client:
        sid = client.request("PUT", "/up", end=False)
        client.send_body(sid, body)
        environ = json.loads(client.response(sid).body)
    assert environ["body_length"] == len(body)
    assert environ["CONTENT_LENGTH"] == str(len(body))
    assert hashlib.sha256(body).hexdigest()  # the body itself is checked by its length/head


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def fresh_chunks(environ, start_response):  # noqa: ANN001, ANN201 - served by the test's server
    """512 MiB in 64 KiB chunks, each a new object: if they piled up, the RSS would show it."""
    start_response("200 OK", [("Content-Type", "application/octet-stream")])

    def body():  # noqa: ANN202
        try:
            for _ in range(512 * 16):
                yield b"y" * (64 * 1024)
        finally:
            logging.getLogger("treadle").warning("stream body closed")

    return body()


def test_a_client_that_opens_no_window_holds_back_the_app(serve_h2, certs: Certs) -> None:
    # HTTP/2 flow control reaches the app thread: with the window shut the app must block
    # in write (as for a slow HTTP/1.1 reader), not pile 512 MiB up in the server.
    server = serve_h2("tests.integration.test_h2:fresh_chunks")
    start_kib = rss_kib(server.proc.pid)
    with H2Client(server.port, tls_ca=certs.ca, window=65535, auto_ack=False) as client:
        sid = client.request("GET", "/")
        stream = client.streams[sid]
        client.wait(lambda: len(stream.body) >= 65535)
        peak = 0
        for _ in range(40):  # open the window 64 KiB at a time, slowly
            client.conn.increment_flow_control_window(65536, sid)
            client.conn.increment_flow_control_window(65536)
            client.flush()
            before = len(stream.body)
            client.wait(lambda before=before: len(stream.body) > before)
            time.sleep(0.01)  # a slow reader, not synchronisation
            peak = max(peak, rss_kib(server.proc.pid))
        assert len(stream.body) < 8 * 1024 * 1024
    assert peak - start_kib < 64 * 1024, f"server RSS grew {peak - start_kib} KiB"
    server.wait_for_line("stream body closed")
