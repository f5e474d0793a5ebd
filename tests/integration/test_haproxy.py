"""HAProxy 2.6 in front of ``treadle serve``: the PROXY protocol and X-Forwarded-For.

Each test writes a haproxy.cfg binding free ports of 127.0.0.1, starts ``haproxy -f cfg
-db`` in the foreground, waits (with a deadline) until it accepts, and sends requests
through it from 127.0.0.2, so the client's address differs from the proxy's (127.0.0.1)
and the test can tell which one the app was given. What is checked is the app's
environ (tests/apps/remote.py), the access log and, for refusals, what a client sees.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Running
from tests.integration.proxies import HAPROXY, Proxy, free_port
from tests.integration.tlscerts import Certs, make_certs

pytestmark = [
    pytest.mark.skipif(HAPROXY is None, reason="haproxy absent (Debian: apt-get install haproxy)"),
    pytest.mark.timeout(60),
]

APP = "tests.apps.remote:app"
CLIENT = "127.0.0.2"  # every 127/8 address is this host's loopback on Linux
DEADLINE_S = 15.0

HAPROXY_CONF = """\
global
    maxconn 200
defaults
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend proxy_v1
    mode tcp
    bind 127.0.0.1:{v1}
    default_backend treadle_v1
backend treadle_v1
    mode tcp
    server treadle 127.0.0.1:{upstream} send-proxy
frontend proxy_v2
    mode tcp
    bind 127.0.0.1:{v2}
    default_backend treadle_v2
backend treadle_v2
    mode tcp
    server treadle 127.0.0.1:{upstream} send-proxy-v2
"""

CHECKED_CONF = """\
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend web
    bind 127.0.0.1:{port}
    default_backend treadle
backend treadle
    option httpchk GET /health
    server treadle 127.0.0.1:{upstream} send-proxy-v2 check inter 200ms
"""

FORWARDFOR_CONF = """\
global
    maxconn 200
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend web
    bind 127.0.0.1:{port}
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    default_backend treadle
backend treadle
    server treadle 127.0.0.1:{upstream}
"""


@pytest.fixture
def directory() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="trd-haproxy-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def haproxy(directory: Path) -> Iterator[Callable[..., tuple[Proxy, dict[str, int]]]]:
    started: list[Proxy] = []

    def start(template: str, upstream: int, *names: str) -> tuple[Proxy, dict[str, int]]:
        ports = {name: free_port() for name in names}
        conf = directory / "haproxy.cfg"
        conf.write_text(template.format(upstream=upstream, **ports))
        assert HAPROXY is not None
        proxy = Proxy([HAPROXY, "-f", str(conf), "-db"], directory, directory / "stdout.log")
        started.append(proxy)
        for port in ports.values():
            proxy.wait_accepting(port)
        return proxy, ports

    yield start
    for proxy in started:
        proxy.stop()


def get(port: int, *headers: str, tls: ssl.SSLContext | None = None) -> tuple[dict, int]:
    """GET / from 127.0.0.2 through ``port``: (the app's JSON, the client's own port)."""
    sock = socket.create_connection(
        ("127.0.0.1", port), timeout=DEADLINE_S, source_address=(CLIENT, 0)
    )
    client_port = sock.getsockname()[1]
    if tls is not None:
        sock = tls.wrap_socket(sock, server_hostname="127.0.0.1")
    with sock:
        extra = "".join(f"{line}\r\n" for line in headers)
        sock.sendall(
            f"GET / HTTP/1.1\r\nHost: example\r\nConnection: close\r\n{extra}\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data
    return json.loads(body), client_port


def test_send_proxy_v1_and_v2_give_the_clients_address(serve, haproxy) -> None:
    treadle: Running = serve(APP, "--proxy-protocol", "--access-log", "-")
    _, ports = haproxy(HAPROXY_CONF, treadle.port, "v1", "v2")
    for name in ("v1", "v2"):
        environ, client_port = get(ports[name])
        assert environ["REMOTE_ADDR"] == CLIENT, name
        assert environ["REMOTE_PORT"] == str(client_port), name
        assert environ["wsgi.url_scheme"] == "http"
    treadle.wait_for_line(lambda line: line.startswith(f"{CLIENT} - - ["))


def test_every_worker_reads_the_header(serve, haproxy) -> None:
    """Under the supervisor each worker wraps its adopted socket the same way."""
    treadle: Running = serve(APP, "--proxy-protocol", "--workers", "2")
    treadle.wait_for_line("2 workers ready")
    _, ports = haproxy(HAPROXY_CONF, treadle.port, "v1", "v2")
    for _ in range(6):
        environ, client_port = get(ports["v2"])
        assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == (CLIENT, str(client_port))
    with socket.create_connection(("127.0.0.1", treadle.port), timeout=DEADLINE_S) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
        assert sock.recv(65536) == b""


def test_a_connection_without_the_header_is_refused(serve, haproxy) -> None:
    treadle: Running = serve(APP, "--proxy-protocol")
    with socket.create_connection(("127.0.0.1", treadle.port), timeout=DEADLINE_S) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
        assert sock.recv(65536) == b""  # closed without a byte of HTTP
    line = treadle.wait_for_line("connection closed: no PROXY header (--proxy-protocol)")
    assert line.count("PROXY") == 1
    # The server carries on: the proxied path still works.
    _, ports = haproxy(HAPROXY_CONF, treadle.port, "v1", "v2")
    assert get(ports["v2"])[0]["REMOTE_ADDR"] == CLIENT


def test_a_client_behind_a_tcp_proxy_cannot_set_its_address(serve, haproxy) -> None:
    """In TCP mode the client writes the HTTP headers: after the PROXY header the
    connection is the client's, so its X-Forwarded-For is not believed."""
    treadle: Running = serve(APP, "--proxy-protocol", "--forwarded-allow-ips", "127.0.0.1")
    _, ports = haproxy(HAPROXY_CONF, treadle.port, "v1", "v2")
    environ, _ = get(ports["v1"], "X-Forwarded-For: 10.9.9.9", "X-Forwarded-Proto: https")
    assert environ["REMOTE_ADDR"] == CLIENT
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["HTTP_X_FORWARDED_FOR"] == "10.9.9.9"


def test_haproxys_health_checks_carry_the_header(serve, haproxy) -> None:
    treadle: Running = serve(APP, "--proxy-protocol", "--access-log", "-")
    _, ports = haproxy(CHECKED_CONF, treadle.port, "port")
    treadle.wait_for_line(lambda line: '"GET /health HTTP/1.' in line and " 200 " in line)
    assert get(ports["port"])[0]["REMOTE_ADDR"] == CLIENT
    assert "connection closed" not in treadle.output


@pytest.fixture
def certs(directory: Path) -> Certs:
    return make_certs(directory)


def test_tls_passes_through_after_the_header(serve, haproxy, certs: Certs) -> None:
    """The header comes before the TLS handshake: treadle reads it beneath TLS."""
    bind = f"ssl:0:interface=127.0.0.1:privateKey={certs.key}:certKey={certs.cert}"
    treadle: Running = serve(APP, "--proxy-protocol", bind=bind, ready=False)
    line = treadle.wait_for_line("Listening at:")
    upstream = int(line.split("https://127.0.0.1:")[1].split()[0])
    _, ports = haproxy(HAPROXY_CONF, upstream, "v1", "v2")
    context = ssl.create_default_context(cafile=str(certs.ca))
    for name in ("v1", "v2"):
        environ, client_port = get(ports[name], tls=context)
        assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == (CLIENT, str(client_port))
        assert environ["wsgi.url_scheme"] == "https"


def test_option_forwardfor_with_the_default_allow_ips(serve, haproxy) -> None:
    treadle: Running = serve(APP, "--access-log", "-")
    _, ports = haproxy(FORWARDFOR_CONF, treadle.port, "port")
    # The client's own X-Forwarded-For comes first; HAProxy appends the real address.
    environ, _ = get(ports["port"], "X-Forwarded-For: 10.9.9.9")
    assert environ["REMOTE_ADDR"] == CLIENT
    assert environ["REMOTE_PORT"] == ""
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["SERVER_PORT"] == "443"
    assert environ["HTTP_X_FORWARDED_FOR"] == f"10.9.9.9,{CLIENT}"  # a second field line, joined
    treadle.wait_for_line(lambda line: line.startswith(f"{CLIENT} - - ["))


def test_option_forwardfor_from_a_proxy_not_allowed(serve, haproxy) -> None:
    treadle: Running = serve(APP, "--forwarded-allow-ips", "10.0.0.0/8")
    _, ports = haproxy(FORWARDFOR_CONF, treadle.port, "port")
    environ, _ = get(ports["port"])
    assert environ["REMOTE_ADDR"] == "127.0.0.1"  # HAProxy's own address
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["HTTP_X_FORWARDED_FOR"] == CLIENT
    assert environ["HTTP_X_FORWARDED_PROTO"] == "https"


def test_a_client_connecting_directly_is_not_believed(serve) -> None:
    treadle: Running = serve(APP)
    environ, client_port = get(
        treadle.port, "X-Forwarded-For: 10.9.9.9", "X-Forwarded-Proto: https"
    )
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == (CLIENT, str(client_port))
    assert environ["wsgi.url_scheme"] == "http"
