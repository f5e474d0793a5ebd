"""nginx with docs/deploy.md's proxy-header lines in front of ``treadle serve``, over TCP and
a unix socket: the client's address and scheme reach the app, a client's forged headers do
not.

nginx runs in the foreground with every path it writes in the test's directory, on a free
port of 127.0.0.1, waited on until it accepts; requests come from 127.0.0.2 so the client's
address differs from nginx's own.
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Running
from tests.integration.proxies import NGINX, Proxy, free_port

pytestmark = [
    pytest.mark.skipif(NGINX is None, reason="nginx absent (Debian: apt-get install nginx)"),
    pytest.mark.timeout(60),
]

APP = "tests.apps.remote:app"
CLIENT = "127.0.0.2"

# The location block is docs/deploy.md's (Behind a proxy), with its upstream.
CONF = """\
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream mysite {{
        server {upstream};
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://mysite;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""


@pytest.fixture
def directory() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="trd-fwd-"))  # short: a unix socket path fits
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_nginx(directory: Path, upstream: str) -> tuple[Proxy, int]:
    assert NGINX is not None
    port = free_port()
    conf = directory / "nginx.conf"
    conf.write_text(CONF.format(dir=directory, upstream=upstream, port=port))
    log = directory / "error.log"
    proxy = Proxy([NGINX, "-p", str(directory), "-c", str(conf), "-e", str(log)], directory, log)
    try:
        proxy.wait_accepting(port)
    except BaseException:
        proxy.stop()
        raise
    return proxy, port


def get(port: int, *headers: str) -> dict:
    with socket.create_connection(
        ("127.0.0.1", port), timeout=15, source_address=(CLIENT, 0)
    ) as sock:
        extra = "".join(f"{line}\r\n" for line in headers)
        sock.sendall(
            f"GET / HTTP/1.1\r\nHost: example\r\nConnection: close\r\n{extra}\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data
    return json.loads(body)


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_the_client_behind_nginx(serve, directory: Path, transport: str) -> None:
    if transport == "unix":
        treadle: Running = serve(APP, "--access-log", "-", bind=f"unix:{directory}/t.sock")
        upstream = f"unix:{directory}/t.sock"
    else:
        treadle = serve(APP, "--access-log", "-")
        upstream = f"127.0.0.1:{treadle.port}"
    nginx, port = start_nginx(directory, upstream)
    try:
        environ = get(port, "X-Forwarded-For: 6.6.6.6", "X-Forwarded-Proto: https")
    finally:
        nginx.stop()
    assert environ["REMOTE_ADDR"] == CLIENT  # not the forged 6.6.6.6, not nginx's address
    assert environ["wsgi.url_scheme"] == "http"  # nginx overwrote the forged proto
    assert environ["HTTP_X_FORWARDED_FOR"] == f"6.6.6.6, {CLIENT}"
    treadle.wait_for_line(lambda line: line.startswith(f"{CLIENT} - - ["))


def test_nginx_not_allowed_is_not_believed(serve, directory: Path) -> None:
    treadle: Running = serve(APP, "--forwarded-allow-ips", "192.0.2.1")
    nginx, port = start_nginx(directory, f"127.0.0.1:{treadle.port}")
    try:
        environ = get(port)
    finally:
        nginx.stop()
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert environ["HTTP_X_FORWARDED_FOR"] == CLIENT
