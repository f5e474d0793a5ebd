"""treadle behind the real Mongrel2 (Debian's mongrel2-core), started and stopped here.

Integration tier: each module starts one Mongrel2 on free 127.0.0.1 ports from a .conf
written here (``m2sh load``, then ``m2sh start``), and each test starts ``treadle
mongrel2`` as a child process and waits for its "Handling for Mongrel2" line. Clients
are http.client and raw sockets talking to Mongrel2, as a browser would.
"""

from __future__ import annotations

import hashlib
import http.client
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Running, treadle_command
from tests.integration.mongrel2_server import (
    HANDLER_IDENT,
    HANDLING,
    M2SH,
    MONGREL2,
    UPLOAD_LIMIT,
    Mongrel2,
    free_ports,
    wait_until,
)

__all__ = ["HANDLING", "Mongrel2", "free_ports", "wait_until"]

pytestmark = [
    pytest.mark.skipif(
        M2SH is None or MONGREL2 is None,
        reason="Mongrel2 is not installed (apt-get install mongrel2-core)",
    ),
    pytest.mark.timeout(120),
]
pytest.importorskip("zmq", reason="pyzmq is not installed (pip install 'treadle[mongrel2]')")


@pytest.fixture(scope="module")
def mongrel2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mongrel2]:
    server = Mongrel2(tmp_path_factory.mktemp("mongrel2"))
    yield server
    server.stop()


@pytest.fixture
def handler(mongrel2: Mongrel2) -> Iterator[Callable[..., Running]]:
    """``handler("tests.apps.echo:app", "--threads", "2")`` -> a treadle handler, subscribed."""
    running: list[Running] = []

    def start(target: str, *args: str, specs: bool = True) -> Running:
        given = [mongrel2.send_spec, mongrel2.recv_spec] if specs else []
        command = treadle_command("mongrel2", target, *given, *args)
        child = Running(command)
        running.append(child)
        child.wait_for_line(HANDLING, timeout=30)
        return child

    yield start
    for child in running:
        child.kill()


def get(mongrel2: Mongrel2, path: str, **kwargs: object) -> tuple[int, dict[str, str], bytes]:
    conn = mongrel2.connection()
    try:
        conn.request(kwargs.pop("method", "GET"), path, **kwargs)  # type: ignore[arg-type]
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_get_and_post(mongrel2: Mongrel2, handler: Callable[..., Running]) -> None:
    import json

    handler("tests.apps.echo:app")
    status, headers, body = get(mongrel2, "/app/items?q=%20x&y")
    assert status == 200
    info = json.loads(body)
    assert info["SCRIPT_NAME"] == "/app"
    assert info["PATH_INFO"] == "/items"
    assert info["QUERY_STRING"] == "q=%20x&y"
    assert info["REMOTE_ADDR"] == "127.0.0.1"
    assert info["SERVER_PORT"] == str(mongrel2.port)
    assert info["wsgi.url_scheme"] == "http"
    assert headers["Server"] == "treadle"
    status, _, body = get(
        mongrel2,
        "/app/form",
        method="POST",
        body=b"a=1&b=2",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    info = json.loads(body)
    assert (status, info["REQUEST_METHOD"], info["body_head"]) == (200, "POST", "a=1&b=2")
    assert info["CONTENT_LENGTH"] == "7"


def test_streamed_response_is_chunked_and_head_is_not(
    mongrel2: Mongrel2, handler: Callable[..., Running]
) -> None:
    handler("tests.apps.trickle:app")
    conn = mongrel2.connection()
    try:
        conn.request("HEAD", "/app/t")
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Transfer-Encoding") is None  # never for HEAD
        assert response.read() == b""
        # The same connection carries on: the HEAD answer ended where it should.
        for _ in range(2):
            conn.request("GET", "/app/t")
            response = conn.getresponse()
            assert response.getheader("Transfer-Encoding") == "chunked"
            assert response.read() == b"first\nsecond\n"
    finally:
        conn.close()


def test_big_streamed_response(mongrel2: Mongrel2, handler: Callable[..., Running]) -> None:
    handler("tests.apps.stream:app")
    status, _, body = get(mongrel2, "/app/s?chunks=400&size=5000")
    assert status == 200
    assert body == (b"x" * 4999 + b"\n") * 400


def read_until_eof(sock: socket.socket) -> bytes:
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def test_http10_response_is_close_delimited(
    mongrel2: Mongrel2, handler: Callable[..., Running]
) -> None:
    handler("tests.apps.trickle:app")
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", mongrel2.port), timeout=20) as sock:
            sock.sendall(b"GET /app/t HTTP/1.0\r\nHost: localhost\r\n\r\n")
            data = read_until_eof(sock)  # Mongrel2 closes the connection: the body's end
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"chunked" not in head.lower() and b"content-length" not in head.lower()
        assert body == b"first\nsecond\n"


def test_disconnect_cancels_a_pending_wait(
    mongrel2: Mongrel2, handler: Callable[..., Running]
) -> None:
    child = handler("tests.apps.waiting:forever")
    sock = socket.create_connection(("127.0.0.1", mongrel2.port), timeout=20)
    sock.sendall(b"GET /app/forever HTTP/1.1\r\nHost: localhost\r\n\r\n")
    child.wait_for_line("forever deferred created")
    sock.close()  # Mongrel2 tells the handler; treadle cancels as for an HTTP disconnect
    child.wait_for_line("forever deferred cancelled")
    child.wait_for_line("forever got RequestCancelled")
    # The handler carries on serving.
    second = socket.create_connection(("127.0.0.1", mongrel2.port), timeout=20)
    second.sendall(b"GET /app/forever HTTP/1.1\r\nHost: localhost\r\n\r\n")
    wait_until(lambda: child.output.count("forever deferred created") == 2, 20, "second request")
    second.close()


def fetch_all(mongrel2: Mongrel2, paths: list[str]) -> list[object]:
    """GET each path on its own connection at once; each result is (status, body) or the
    exception the client saw."""
    results: list[object] = [None] * len(paths)

    def one(index: int, path: str) -> None:
        try:
            results[index] = get(mongrel2, path)[::2]
        except Exception as error:
            results[index] = error

    threads = [threading.Thread(target=one, args=(i, p)) for i, p in enumerate(paths)]
    for thread in threads:
        thread.start()
    return results, threads  # type: ignore[return-value]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_under_load_finishes_requests_in_flight(
    mongrel2: Mongrel2, handler: Callable[..., Running], sig: int
) -> None:
    child = handler(
        "tests.apps.slow:app", "--threads", "4", "--graceful-timeout", "20", "--log-level", "debug"
    )
    results, threads = fetch_all(mongrel2, [f"/app/{n}?s=1" for n in range(8)])
    wait_until(lambda: child.output.count("slow app start") >= 4, 20, "4 requests running")
    # The other four reached this handler (queued for a thread), not just Mongrel2: requests
    # Mongrel2 still holds at the stop go to other handlers, not to this one.
    wait_until(lambda: child.output.count("mongrel2: request /app/") == 8, 20, "8 received")
    started = time.monotonic()
    assert child.stop(sig, timeout=20) == 0
    assert time.monotonic() - started < 15
    for thread in threads:
        thread.join(20)
    # The four running and the four queued behind them were all in hand: all answered.
    assert results == [(200, b"done after 1.00\n")] * 8, results


def test_graceful_timeout_cuts_off_without_half_made_responses(
    mongrel2: Mongrel2, handler: Callable[..., Running]
) -> None:
    child = handler(
        "tests.apps.slow:app", "--threads", "2", "--graceful-timeout", "1", "--log-level", "debug"
    )
    results, threads = fetch_all(mongrel2, [f"/app/{n}?s=30" for n in range(4)])
    wait_until(lambda: child.output.count("slow app start") >= 2, 20, "2 requests running")
    wait_until(lambda: child.output.count("mongrel2: request /app/") == 4, 20, "4 received")
    started = time.monotonic()
    assert child.stop(signal.SIGTERM, timeout=20) == 0
    assert time.monotonic() - started < 10  # --graceful-timeout 1, not the app's 30 s
    for thread in threads:
        thread.join(20)
    # Queued ones are told to retry; running ones see their connection close. None gets
    # a response that looks whole.
    statuses = [r[0] if isinstance(r, tuple) else type(r).__name__ for r in results]
    assert statuses.count(503) == 2, results
    assert all(
        isinstance(r, (http.client.RemoteDisconnected, ConnectionError)) or r[0] == 503
        for r in results
    ), results


@pytest.mark.parametrize("trusted", [True, False])
def test_proxy_headers_before_mongrel2(
    mongrel2: Mongrel2, handler: Callable[..., Running], trusted: bool
) -> None:
    import json

    # The default trusts 127.0.0.1, the address Mongrel2 saw this client connect from.
    handler("tests.apps.echo:app", *([] if trusted else ["--forwarded-allow-ips="]))
    _, _, body = get(
        mongrel2,
        "/app/p",
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"},
    )
    info = json.loads(body)
    assert info["wsgi.url_scheme"] == ("https" if trusted else "http")
    # Mongrel2 replaces X-Forwarded-For with its own peer: the address stays that one.
    assert info["REMOTE_ADDR"] == "127.0.0.1"


def test_50_mib_async_upload(mongrel2: Mongrel2, handler: Callable[..., Running]) -> None:
    handler("tests.apps.digest:app", "--upload-dir", str(mongrel2.upload_dir))
    block = hashlib.sha256(b"treadle").digest() * 2048  # 64 KiB, not all one byte
    body = block * 800  # 50 MiB
    status, _, answer = get(mongrel2, "/app/upload", method="POST", body=body)
    assert status == 200
    assert answer == f"{len(body)} {hashlib.sha256(body).hexdigest()}\n".encode()
    # Read through its descriptor and unlinked at once: nothing left behind.
    assert list(mongrel2.upload_dir.iterdir()) == []


def test_the_app_reads_an_upload_while_mongrel2_writes_it(
    mongrel2: Mongrel2, handler: Callable[..., Running], tmp_path: Path
) -> None:
    handler("tests.apps.upload_progress:app", "--upload-dir", str(mongrel2.upload_dir))
    marker = tmp_path / "reading"
    body = hashlib.sha256(b"treadle").digest() * 65536  # 2 MiB: an async upload
    first, rest = body[: 256 * 1024], body[256 * 1024 :]
    with socket.create_connection(("127.0.0.1", mongrel2.port), timeout=30) as sock:
        sock.sendall(
            b"POST /app/up?%s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % (str(marker).encode(), len(body)) + first
        )
        # The rest is sent only once the app has read some: if it ran only after the
        # upload was done, the marker would never appear.
        wait_until(marker.exists, 20, "the app to read the first bytes of the upload")
        sock.sendall(rest)
        answer = read_until_eof(sock)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert answer.endswith(f"{len(body)} {hashlib.sha256(body).hexdigest()}\n".encode())
    wait_until(lambda: not any(mongrel2.upload_dir.iterdir()), 10, "the upload file removed")


def test_a_client_leaving_mid_upload_fails_the_apps_read(
    mongrel2: Mongrel2, handler: Callable[..., Running], tmp_path: Path
) -> None:
    handler("tests.apps.upload_progress:app", "--upload-dir", str(mongrel2.upload_dir))
    marker = tmp_path / "reading"
    with socket.create_connection(("127.0.0.1", mongrel2.port), timeout=30) as sock:
        sock.sendall(
            b"POST /app/up?%s HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4000000\r\n\r\n"
            % str(marker).encode()
            + b"z" * 300_000
        )
        wait_until(marker.exists, 20, "the app to read the first bytes of the upload")
    # Mongrel2's disconnect notice reaches the read waiting for the rest.
    error_file = marker.with_suffix(".err")
    wait_until(error_file.exists, 20, "the app's read to fail")
    assert "UploadFailed" in error_file.read_text()
    status, _, answer = get(
        mongrel2, "/app/small?" + str(tmp_path / "again"), method="POST", body=b"ok"
    )
    assert (status, answer) == (200, f"2 {hashlib.sha256(b'ok').hexdigest()}\n".encode())


def test_forged_upload_notices_get_400_and_files_are_left_alone(
    mongrel2: Mongrel2, handler: Callable[..., Running], tmp_path: Path
) -> None:
    handler("tests.apps.digest:app", "--upload-dir", str(mongrel2.upload_dir))
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not for clients")
    inside = mongrel2.upload_dir / "m2.forged1"
    inside.write_bytes(b"another client's upload")
    try:
        for path in (str(secret), "/etc/hostname", str(inside)):
            status, headers, body = get(
                mongrel2,
                "/app/x",
                method="POST",
                body=b"small",
                headers={"x-mongrel2-upload-start": path, "x-mongrel2-upload-done": path},
            )
            assert status == 400, (path, body)
        assert secret.read_bytes() == b"not for clients"
        assert inside.read_bytes() == b"another client's upload"
    finally:
        inside.unlink()


@pytest.mark.parametrize("name", ["/app", HANDLER_IDENT, "1"])
def test_from_config(mongrel2: Mongrel2, handler: Callable[..., Running], name: str) -> None:
    # The specs and the upload directory (from upload.temp_store) come from config.sqlite.
    handler(
        "tests.apps.digest:app", "--from-config", str(mongrel2.db), "--handler", name, specs=False
    )
    body = b"y" * (UPLOAD_LIMIT * 3)  # past limits.content_length: an async upload
    status, _, answer = get(mongrel2, "/app/up", method="POST", body=body)
    assert (status, answer) == (200, f"{len(body)} {hashlib.sha256(body).hexdigest()}\n".encode())


def test_from_config_errors(mongrel2: Mongrel2, tmp_path: Path) -> None:
    for args, message in [
        (["--from-config", str(mongrel2.db), "--handler", "/nowhere"], "no handler"),
        (["--from-config", str(tmp_path / "missing.sqlite"), "--handler", "1"], "no such file"),
        (["--from-config", str(mongrel2.db)], "needs --handler"),
        (["tcp://127.0.0.1"], "cannot guess RECV_SPEC"),
        (["tcp//127.0.0.1:5"], "not a ZeroMQ endpoint"),
    ]:
        result = subprocess.run(
            treadle_command("mongrel2", "tests.apps.hello:app", *args),
            capture_output=True,
            text=True,
            timeout=30,
            cwd=Path(__file__).parents[2],
        )
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_stop_during_an_upload_answers_503(
    mongrel2: Mongrel2, handler: Callable[..., Running]
) -> None:
    child = handler(
        "tests.apps.digest:app", "--upload-dir", str(mongrel2.upload_dir), "--log-level", "debug"
    )
    with socket.create_connection(("127.0.0.1", mongrel2.port), timeout=20) as sock:
        sock.sendall(
            b"POST /app/up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n\r\n"
            + b"z" * 100_000
        )
        child.wait_for_line("mongrel2: request /app/up")  # the upload-start notice
        assert child.stop(signal.SIGTERM, timeout=20) == 0
        answer = read_until_eof(sock)
    # The handler that took the upload will not be there to read it: the client is told so
    # at once instead of waiting for Mongrel2's timeout.
    assert answer.startswith(b"HTTP/1.1 503 "), answer[:200]
