"""WSGI apps that every server in the benchmark serves: `hello` and `mib`.

Benchmark fixtures, importable by any WSGI server as `bench.apps:hello` (or `bench.apps.hello` for
`twist web --wsgi`). They must stay trivial and allocation-free per request, so that the numbers
measure the server, not the app.
"""

from collections.abc import Callable, Iterable
from typing import Any

HELLO_BODY = b"Hello, world!\n"
MIB_BODY = b"x" * (1024 * 1024)  # preallocated once: the app does no work per request

_HELLO_HEADERS = [
    ("Content-Type", "text/plain"),
    ("Content-Length", str(len(HELLO_BODY))),
]
_MIB_HEADERS = [
    ("Content-Type", "application/octet-stream"),
    ("Content-Length", str(len(MIB_BODY))),
]

StartResponse = Callable[..., Any]


def hello(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Answer every request with 14 bytes and a Content-Length."""
    start_response("200 OK", list(_HELLO_HEADERS))
    return [HELLO_BODY]


def mib(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Answer every request with a 1 MiB body in one piece and a Content-Length."""
    start_response("200 OK", list(_MIB_HEADERS))
    return [MIB_BODY]
