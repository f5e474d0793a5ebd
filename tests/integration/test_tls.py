"""``ssl:`` binds seen by real TLS clients: curl and Python's ssl module, with ALPN and without.

Each test starts the real server on ``ssl:0`` with a CA and a server certificate the
test makes (cryptography); clients verify the server against that CA.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, Running, treadle_command
from tests.integration.tlscerts import Certs, make_certs
from tests.integration.wire import read_response

DEADLINE_S = 30.0
ADDRESS = re.compile(r"(https?)://127\.0\.0\.1:(\d+)")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def ssl_bind(certs: Certs, cert: Path | None = None) -> str:
    return f"ssl:0:interface=127.0.0.1:privateKey={certs.key}:certKey={cert or certs.cert}"


def ports(line: str) -> dict[str, int]:
    """The Listening line's addresses: {"https": port, "http": port}."""
    return {scheme: int(port) for scheme, port in ADDRESS.findall(line)}


@pytest.fixture
def serve_tls(serve, certs: Certs) -> Callable[..., Running]:  # noqa: ANN001
    """``serve_tls("tests.apps.echo:app")`` -> a server on ssl:0; .port is its TLS port."""

    def start(target: str, *args: str, cert: Path | None = None) -> Running:
        server = serve(target, *args, bind=ssl_bind(certs, cert))
        # Whatever scheme the line gives (test_..._startup_line_says_https checks it).
        server.port = int(ADDRESS.search(server.wait_for_line("Listening at:"))[2])
        return server

    return start


def client_context(certs: Certs, alpn: list[str] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs.ca))
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    return context


def tls_connect(port: int, context: ssl.SSLContext, timeout: float = DEADLINE_S) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def get(sock: ssl.SSLSocket, path: str = "/") -> dict:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    response = read_response(sock)
    assert response.status == 200
    return json.loads(response.body)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_until(condition: Callable[[], bool], timeout: float = DEADLINE_S) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)  # polling another process's state
    return True


# -- ALPN: the defect of issue 10 -------------------------------------------------------------


def test_curl_asking_for_http11_gets_https_and_http11(serve_tls, certs: Certs) -> None:
    # curl's default offer (h2, http/1.1) gets HTTP/2: tests/integration/test_h2.py.
    server = serve_tls("tests.apps.echo:app")
    url = f"https://127.0.0.1:{server.port}/path?q=1"
    result = subprocess.run(
        ["curl", "-sS", "-v", "--http1.1", "--cacert", str(certs.ca), "--max-time", "20", url],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )
    assert result.returncode == 0, result.stderr
    assert "ALPN: offers http/1.1" in result.stderr or "ALPN, offering http/1.1" in result.stderr
    assert re.search(r"ALPN[:,] server accepted (to use )?http/1\.1", result.stderr), result.stderr
    environ = json.loads(result.stdout)
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["PATH_INFO"] == "/path" and environ["QUERY_STRING"] == "q=1"
    assert environ["SERVER_PORT"] == str(server.port)


@pytest.mark.parametrize(
    ("offered", "selected"),
    [
        (["h2", "http/1.1"], "h2"),  # what browsers offer: HTTP/2 (test_h2.py speaks it)
        (["http/1.1"], "http/1.1"),
        (None, None),  # no ALPN at all
        (["spdy/3"], None),  # nothing in common: the handshake goes on without ALPN
    ],
)
def test_python_client_alpn(serve_tls, certs: Certs, offered, selected) -> None:  # noqa: ANN001
    server = serve_tls("tests.apps.echo:app")
    with tls_connect(server.port, client_context(certs, offered)) as sock:
        assert sock.selected_alpn_protocol() == selected
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        if selected != "h2":
            assert get(sock)["wsgi.url_scheme"] == "https"


def test_tls_below_1_2_is_refused_and_the_server_goes_on(serve_tls, certs: Certs) -> None:
    server = serve_tls("tests.apps.echo:app")
    old = client_context(certs)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # the client itself would allow TLS 1.1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python frowns on TLS 1.0/1.1 too
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError), tls_connect(server.port, old):
        pass
    with tls_connect(server.port, client_context(certs)) as sock:
        assert get(sock)["wsgi.url_scheme"] == "https"


def test_a_fullchain_file_sends_the_chain(serve_tls, certs: Certs) -> None:
    # With the CA in the chain the server sends, a client that trusts only the CA still
    # verifies; mostly this checks the file's second certificate is not an error.
    server = serve_tls("tests.apps.echo:app", cert=certs.fullchain)
    with tls_connect(server.port, client_context(certs, ["http/1.1"])) as sock:
        assert sock.selected_alpn_protocol() == "http/1.1"
        assert get(sock)["wsgi.url_scheme"] == "https"


# -- the scheme, per connection ----------------------------------------------------------------


def test_scheme_is_per_connection_and_the_startup_line_says_https(serve, certs: Certs) -> None:
    server = serve(
        "tests.apps.echo:app",
        "--bind",
        "tcp:0:interface=127.0.0.1",
        bind=ssl_bind(certs),
    )
    line = server.wait_for_line("Listening at:")
    found = ports(line)
    assert set(found) == {"http", "https"}, line
    with tls_connect(found["https"], client_context(certs)) as sock:
        assert get(sock)["wsgi.url_scheme"] == "https"
    with socket.create_connection(("127.0.0.1", found["http"]), timeout=DEADLINE_S) as plain:
        environ = get(plain)  # type: ignore[arg-type]
    assert environ["wsgi.url_scheme"] == "http"


# -- HTTP/1.1 over TLS: keep-alive, flow control, aborted downloads ---------------------------


def test_keep_alive_over_tls(serve_tls, certs: Certs) -> None:
    server = serve_tls("tests.apps.echo:app")
    with tls_connect(server.port, client_context(certs, ["http/1.1"])) as sock:
        paths = [get(sock, f"/{n}")["PATH_INFO"] for n in range(20)]
    assert paths == [f"/{n}" for n in range(20)]


def test_a_large_response_over_tls_arrives_whole(serve_tls, certs: Certs) -> None:
    server = serve_tls("tests.apps.big:stream")
    with tls_connect(server.port, client_context(certs)) as sock:
        sock.sendall(b"GET /?mib=64 HTTP/1.1\r\nHost: x\r\n\r\n")
        response = read_response(sock)
        assert response.status == 200
        assert len(response.body) == 64 * 1024 * 1024
        assert response.body.count(b"z") == len(response.body)
        # The connection is still good for another request.
        sock.sendall(b"GET /?mib=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert len(read_response(sock).body) == 1024 * 1024


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_slow_reader_over_tls_holds_back_the_app(serve_tls, certs: Certs) -> None:
    # Flow control through the TLS layer: while the client reads slowly the app thread
    # must block, not pile 512 MiB up in the server.
    server = serve_tls("tests.apps.big:stream")
    start_kib = rss_kib(server.proc.pid)
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE_S)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    with client_context(certs).wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(b"GET /?mib=512 HTTP/1.1\r\nHost: x\r\n\r\n")
        peak = 0
        received = 0
        for step in range(100):  # read 1.6 MiB in 100 small reads, slowly
            received += len(sock.recv(16 * 1024))
            if step % 10 == 0:
                time.sleep(0.02)  # a slow reader, not synchronisation
                peak = max(peak, rss_kib(server.proc.pid))
        assert received > 0
    assert peak - start_kib < 64 * 1024, f"server RSS grew {peak - start_kib} KiB"
    server.wait_for_line("stream body closed")


def test_a_large_upload_over_tls(serve_tls, certs: Certs) -> None:
    server = serve_tls("tests.apps.echo:app")
    body = os.urandom(1024 * 1024) * 24  # 24 MiB, past the spool threshold
    with tls_connect(server.port, client_context(certs, ["http/1.1"])) as sock:
        sock.sendall(
            b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        view = memoryview(body)
        for offset in range(0, len(body), 256 * 1024):
            sock.sendall(view[offset : offset + 256 * 1024])
        response = read_response(sock, "POST")
    environ = json.loads(response.body)
    assert environ["body_length"] == len(body)
    assert environ["body_head"] == body[:64].decode("latin-1")


def test_a_chunked_upload_over_tls(serve_tls, certs: Certs) -> None:
    server = serve_tls("tests.apps.echo:app")
    pieces = [os.urandom(100_000) for _ in range(30)]
    with tls_connect(server.port, client_context(certs)) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in pieces:
            sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
        environ = json.loads(read_response(sock, "POST").body)
    assert environ["body_length"] == sum(map(len, pieces))
    assert environ["body_head"] == pieces[0][:64].decode("latin-1")


def test_clients_that_abort_mid_download_over_tls_leak_no_descriptor(
    serve_tls, certs: Certs
) -> None:
    server = serve_tls("tests.apps.big:stream", "--threads", "4")
    context = client_context(certs)
    with tls_connect(server.port, context) as sock:
        sock.sendall(b"GET /?mib=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock).status == 200
    pid = server.proc.pid
    # The first client's connection is gone once the count stops falling: that is the base.
    baseline = open_fds(pid)
    for _ in range(40):
        sock = tls_connect(server.port, context)
        sock.sendall(b"GET /?mib=256 HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.recv(64 * 1024)
        # An abortive close (RST), as a browser tab that is closed mid-download.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
    assert wait_until(lambda: open_fds(pid) <= baseline), (
        f"{open_fds(pid)} descriptors open, {baseline} before"
    )
    with tls_connect(server.port, context) as sock:
        sock.sendall(b"GET /?mib=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert len(read_response(sock).body) == 1024 * 1024


# -- bad key and certificate files fail at start ----------------------------------------------


@pytest.fixture
def bad_files(tmp_path: Path, certs: Certs) -> Iterator[dict[str, tuple[str, str]]]:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    yield {
        "missing key": (str(tmp_path / "nope.pem"), "cannot read the TLS private key"),
        "missing cert": (f"{certs.key}:certKey={tmp_path / 'nope.pem'}", "cannot read"),
        "key is a cert": (f"{certs.cert}:certKey={certs.cert}", "holds no PEM private key"),
        "cert is a key": (f"{certs.key}:certKey={certs.key}", "holds no PEM certificate"),
        "empty cert": (f"{certs.key}:certKey={empty}", "holds no PEM certificate"),
        "damaged cert": (f"{certs.key}:certKey={garbage}", "holds a damaged certificate"),
        "wrong key": (f"{certs.other_key}:certKey={certs.cert}", "does not belong to"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing key",
        "missing cert",
        "key is a cert",
        "cert is a key",
        "empty cert",
        "damaged cert",
        "wrong key",
    ],
)
def test_bad_tls_files_fail_at_start_with_one_line_and_status_2(bad_files, case: str) -> None:  # noqa: ANN001
    key_and_rest, message = bad_files[case]
    bind = f"ssl:0:interface=127.0.0.1:privateKey={key_and_rest}"
    result = subprocess.run(
        treadle_command("serve", "tests.apps.echo:app", "--bind", bind),
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        cwd=ROOT,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    output = (result.stdout + result.stderr).strip()
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1, output
    assert message in output
    assert "Listening at" not in output


def test_an_unknown_ssl_parameter_fails_at_start(certs: Certs) -> None:
    bind = ssl_bind(certs) + ":verify=yes"
    result = subprocess.run(
        treadle_command("serve", "tests.apps.echo:app", "--bind", bind),
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "does not take verify" in result.stdout + result.stderr


# -- the server's own closes reach the client over TLS ----------------------------------------


def read_to_close(sock: ssl.SSLSocket, timeout: float = 10.0) -> bytes:
    """Everything until the server closes; fails if it does not within the timeout."""
    sock.settimeout(timeout)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_connection_close_over_tls_ends_the_connection(serve_tls, certs: Certs) -> None:
    server = serve_tls("tests.apps.echo:app")
    with tls_connect(server.port, client_context(certs)) as sock:
        sock.sendall(b"GET /bye HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = read_to_close(sock)  # a TimeoutError here: the close never came
    assert raw.startswith(b"HTTP/1.1 200 ") and b'"PATH_INFO": "/bye"' in raw


def test_a_body_delimited_by_close_over_tls_ends(serve_tls, certs: Certs) -> None:
    # HTTP/1.0 and a streamed response of unknown length: only the close ends the body
    # (RFC 9112 §6.3 rule 8), so a close that never comes hangs the client.
    server = serve_tls("tests.apps.stream:app")
    with tls_connect(server.port, client_context(certs)) as sock:
        sock.sendall(b"GET /?chunks=3&size=10 HTTP/1.0\r\nHost: x\r\n\r\n")
        raw = read_to_close(sock)
    assert raw.split(b"\r\n\r\n", 1)[1] == b"xxxxxxxxx\n" * 3


def test_an_idle_tls_connection_is_closed_at_the_keep_alive_timeout(
    serve_tls, certs: Certs
) -> None:
    server = serve_tls("tests.apps.echo:app", "--keep-alive", "1")
    pid = server.proc.pid
    with tls_connect(server.port, client_context(certs)) as sock:
        baseline = open_fds(pid)
        assert get(sock)["PATH_INFO"] == "/"
        started = time.monotonic()
        assert read_to_close(sock, timeout=10.0) == b""
        assert time.monotonic() - started < 5
        # The client has not answered with its own close_notify nor closed its socket:
        # the server must not wait for either to let the connection go.
        assert wait_until(lambda: open_fds(pid) < baseline, 10.0), "the server holds it still"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_a_returning_client_resumes_its_session(serve_tls, certs: Certs, version) -> None:  # noqa: ANN001
    server = serve_tls("tests.apps.echo:app")
    context = client_context(certs, ["http/1.1"])
    context.maximum_version = version

    def visit(session: ssl.SSLSession | None) -> tuple[ssl.SSLSession | None, bool]:
        with context.wrap_socket(
            socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE_S),
            server_hostname="127.0.0.1",
            session=session,
        ) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            # Read to the end: a TLS 1.3 ticket arrives after the handshake.
            assert read_to_close(sock).startswith(b"HTTP/1.1 200 ")
            return sock.session, sock.session_reused

    session, reused = visit(None)
    assert session is not None and not reused
    assert visit(session)[1]


def test_treadle_serve_returns_2_for_a_missing_key(tmp_path: Path) -> None:
    script = (
        "import sys, treadle\n"
        f"bind = 'ssl:0:interface=127.0.0.1:privateKey={tmp_path / 'nope.pem'}'\n"
        "sys.exit(10 + treadle.serve(lambda environ, start_response: [], bind=[bind]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert result.returncode == 12, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "cannot read the TLS private key" in result.stderr


def test_a_tls_client_that_stops_reading_is_dropped_after_the_send_timeout(
    serve_tls, certs: Certs
) -> None:
    server = serve_tls("tests.apps.big:stream", "--send-timeout", "2")
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE_S)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    with client_context(certs).wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(b"GET /?mib=1024 HTTP/1.1\r\nHost: x\r\n\r\n")
        server.wait_for_line("client read nothing for")
        server.wait_for_line("stream body closed")  # the app's thread is free again
    with tls_connect(server.port, client_context(certs)) as sock:
        sock.sendall(b"GET /?mib=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert len(read_response(sock).body) == 1024 * 1024
