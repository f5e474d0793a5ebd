"""h2c: HTTP/2 without TLS, only with --h2c: by prior knowledge and by ``Upgrade: h2c``."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess

import pytest

from tests.integration.h2client import H2Client
from tests.integration.wire import read_response

DEADLINE_S = 30.0


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("curl")
    if path is None:
        pytest.skip("curl is not installed")
    return subprocess.run(
        [path, "-sS", "-v", "--max-time", "20", *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )


def test_curl_with_prior_knowledge(serve) -> None:
    server = serve("tests.apps.echo:app", "--h2c")
    result = curl("--http2-prior-knowledge", f"http://127.0.0.1:{server.port}/pk?x=1")
    assert result.returncode == 0, result.stderr
    assert "< HTTP/2 200" in result.stderr
    environ = json.loads(result.stdout)
    assert environ["SERVER_PROTOCOL"] == "HTTP/2"
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["PATH_INFO"] == "/pk" and environ["QUERY_STRING"] == "x=1"


def test_curl_upgrade_h2c(serve) -> None:
    server = serve("tests.apps.echo:app", "--h2c")
    result = curl("--http2", f"http://127.0.0.1:{server.port}/up", "-H", "X-Test: yes")
    assert result.returncode == 0, result.stderr
    assert "< HTTP/1.1 101 Switching Protocols" in result.stderr
    assert "< HTTP/2 200" in result.stderr
    environ = json.loads(result.stdout)
    assert environ["SERVER_PROTOCOL"] == "HTTP/2"
    assert environ["HTTP_X_TEST"] == "yes"
    # The next requests on the upgraded connection are plain HTTP/2 streams.
    again = curl(
        "--http2", f"http://127.0.0.1:{server.port}/a", f"http://127.0.0.1:{server.port}/b"
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.count('"SERVER_PROTOCOL": "HTTP/2"') == 2


def test_an_upgrade_with_a_body_is_answered_over_http11(serve) -> None:
    server = serve("tests.apps.echo:app", "--h2c")
    result = curl("--http2", "-d", "a=1", f"http://127.0.0.1:{server.port}/post")
    assert result.returncode == 0, result.stderr
    assert "101" not in result.stderr
    environ = json.loads(result.stdout)
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1" and environ["body_head"] == "a=1"


def test_prior_knowledge_with_the_h2_library(serve) -> None:
    server = serve("tests.apps.echo:app", "--h2c")
    with H2Client(server.port) as client:
        # The preface arrives in pieces: the server waits for all of it.
        stream = client.get("/lib")
    assert stream.status == 200
    assert json.loads(stream.body)["SERVER_PROTOCOL"] == "HTTP/2"


def test_the_preface_split_across_packets(serve) -> None:
    server = serve("tests.apps.echo:app", "--h2c")
    with H2Client(server.port, preface=False) as client:
        client.conn.initiate_connection()
        data = client.conn.data_to_send()
        for index in range(0, 24, 5):  # the 24-byte preface, 5 bytes at a time
            client.sock.sendall(data[index : min(index + 5, 24)])
        client.sock.sendall(data[24:])
        stream = client.get("/split")
    assert stream.status == 200


def test_without_h2c_the_preface_is_a_bad_http11_request(serve) -> None:
    server = serve("tests.apps.echo:app")
    with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE_S) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        response = read_response(sock)
    assert 400 <= response.status < 600
    # And Upgrade: h2c is ignored: the request is served over HTTP/1.1.
    result = curl("--http2", f"http://127.0.0.1:{server.port}/x")
    assert result.returncode == 0, result.stderr
    assert "101" not in result.stderr
    assert json.loads(result.stdout)["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert "Listening at" in server.output
