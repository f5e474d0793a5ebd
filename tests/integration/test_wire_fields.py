"""What the real server puts on the wire and in the environ by itself, over a unix socket.

The real ``treadle serve`` in a subprocess; a raw HTTP/1.0 request without Host, as a
reverse proxy on the same host may send.
"""

from __future__ import annotations

import json
import socket

import treadle
from tests.integration.wire import read_until_close


def test_unix_socket_http10_without_host_gets_a_port_software_and_a_clean_cookie(
    serve, tmp_path
) -> None:
    path = tmp_path / "app.sock"
    server = serve("tests.apps.cookies:app", "--bind", f"unix:{path}")
    server.wait_for_line("Listening at:")
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(str(path))
        client.sendall(b"GET / HTTP/1.0\r\n\r\n")
        raw = read_until_close(client)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), raw
    # RFC 9110 §5.5: no whitespace before the value (Django's cookie output starts with one)
    assert b"\r\nSet-Cookie: csrftoken=abc; Path=/\r\n" in head + b"\r\n", head
    environ = json.loads(body)
    assert environ["SERVER_SOFTWARE"] == f"treadle/{treadle.__version__}"
    assert environ["SERVER_PORT"] == "80"  # PEP 3333: never empty; gunicorn's unix-socket rule
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.0"
