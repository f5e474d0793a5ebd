"""Build the PEP 3333 environ for one request from a parsed RequestHead.

Pure layer: the latin-1 "bytes as native str" rules live here and nowhere else. No
threads, no Twisted, no sockets; the caller passes addresses, the body and the error stream.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from treadle.http.events import RequestHead
from treadle.version import __version__

# Header name -> environ key ("" = drop the header). Client-chosen names fill it, so it is
# bounded: past the limit a name is converted on every request instead of being remembered.
_KEY_CACHE_MAX = 1024
_KEY_CACHE: dict[bytes, str] = {}

# Host header -> (SERVER_NAME, port or "" for the scheme's default); bounded for the same reason.
_HOST_CACHE_MAX = 256
_HOST_CACHE: dict[bytes, tuple[str, str]] = {}

_METHODS: dict[bytes, str] = {
    m: m.decode("ascii")
    for m in (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"TRACE")
}
_PROTOCOLS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0", "2": "HTTP/2"}

_BASE: dict[str, object] = {
    "wsgi.version": (1, 0),
    "wsgi.multithread": True,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
    # The server de-chunks and ends the stream itself, so read() without a size is safe.
    "wsgi.input_terminated": True,
    # As gunicorn ("gunicorn/23.0.0") and waitress name themselves; apps show it.
    "SERVER_SOFTWARE": f"treadle/{__version__}",
}
_BASE_MULTIPROCESS = {**_BASE, "wsgi.multiprocess": True}


def split_script_name(path_info: str, script_name: str) -> str | None:
    """PATH_INFO for a request under the mount ``script_name``, or None when outside it.

    "/app" matches "/app" (PATH_INFO "") and "/app/x" ("/x") but not "/apple".
    """
    if not script_name:
        return path_info
    prefix = script_name.rstrip("/")
    if not prefix:
        return path_info
    if not path_info.startswith(prefix):
        return None
    rest = path_info[len(prefix) :]
    if rest and rest[0] != "/":
        return None
    return rest


def decode_path(raw_path: bytes) -> str:
    """Percent-decode a request path to bytes, then to a latin-1 str (PEP 3333).

    "%C3%A9" becomes "Ã©" (the app re-encodes to latin-1 and decodes as UTF-8), and "%2F"
    becomes "/": PEP 3333 PATH_INFO is the decoded path, as CGI defines it.
    """
    if b"%" not in raw_path:
        return raw_path.decode("latin-1")
    return unquote_to_bytes(raw_path).decode("latin-1")


def _environ_key(name: bytes) -> str:
    """The environ key for header ``name``, or "" when the header must be dropped."""
    key = _KEY_CACHE.get(name)
    if key is not None:
        return key
    text = name.decode("latin-1").upper()
    if "_" in text:
        # "X-Forwarded_For" would become HTTP_X_FORWARDED_FOR and spoof the real header
        # (nginx's underscores_in_headers off, gunicorn's header_map drop).
        key = ""
    elif text == "CONTENT-TYPE":
        key = "CONTENT_TYPE"
    elif text == "CONTENT-LENGTH":
        key = "CONTENT_LENGTH"
    else:
        key = "HTTP_" + text.replace("-", "_")
    if len(_KEY_CACHE) < _KEY_CACHE_MAX:
        _KEY_CACHE[name] = key
    return key


def _split_host(host: bytes) -> tuple[str, str]:
    """(SERVER_NAME, SERVER_PORT or "") from a Host value: "h", "h:8000", "[::1]:8000"."""
    cached = _HOST_CACHE.get(host)
    if cached is not None:
        return cached
    text = host.decode("latin-1")
    name, port = text, ""
    if text.startswith("["):
        # RFC 3986 §3.2.2: an IPv6 literal keeps its brackets, so SERVER_NAME stays usable
        # in a reconstructed URL.
        end = text.find("]")
        if end > 0:
            name, rest = text[: end + 1], text[end + 1 :]
            if rest[:1] == ":":
                port = rest[1:]
    else:
        head, sep, tail = text.partition(":")
        if sep:
            name, port = head, tail
    if not (port.isascii() and port.isdigit()):
        port = ""
    result = (name, port)
    if len(_HOST_CACHE) < _HOST_CACHE_MAX:
        _HOST_CACHE[host] = result
    return result


def build_environ(
    head: RequestHead,
    *,
    url_scheme: str,
    local: tuple[str, int] | None,
    peer: tuple[str, int] | None,
    script_name: str,
    path_info: str,
    multiprocess: bool,
    wsgi_input: object,
    errors: object,
    content_length: int | None,
) -> dict[str, object]:
    """The PEP 3333 environ for ``head``; every CGI value is a native (latin-1) str.

    ``path_info`` is already decoded and split from ``script_name``. ``content_length``,
    when not None, is the real body length (a buffered chunked body) and wins over the header.
    ``local`` None means a unix socket. For a chunked request buffered whole, the app sees
    CONTENT_LENGTH and no HTTP_TRANSFER_ENCODING: the environ describes the body it reads.
    """
    environ = (_BASE_MULTIPROCESS if multiprocess else _BASE).copy()
    host: bytes | None = None
    for name, value in head.headers:
        key = _KEY_CACHE.get(name)
        if key is None:
            key = _environ_key(name)
        if not key:
            continue
        text = value.decode("latin-1")
        previous = environ.get(key)
        if previous is None:
            environ[key] = text
            if key == "HTTP_HOST":
                host = value
        elif key == "HTTP_COOKIE":
            # RFC 6265 §5.4: cookie-pairs are joined with "; ", never ",".
            environ[key] = f"{previous}; {text}"
        elif key != "CONTENT_TYPE" and key != "CONTENT_LENGTH":
            # RFC 9110 §5.3: repeated field lines mean their values joined with commas.
            environ[key] = f"{previous},{text}"
    if content_length is not None:
        environ["CONTENT_LENGTH"] = str(content_length)
        # The body was de-chunked and counted: the app reads plain bytes of that length, so
        # the environ must not also say chunked (an app that proxies onward and copies both
        # would send Transfer-Encoding with Content-Length, RFC 9112 §6.1's smuggling shape).
        environ.pop("HTTP_TRANSFER_ENCODING", None)

    method = head.method
    environ["REQUEST_METHOD"] = _METHODS.get(method) or method.decode("latin-1")
    environ["SCRIPT_NAME"] = script_name
    environ["PATH_INFO"] = path_info
    environ["QUERY_STRING"] = head.query.decode("latin-1")
    environ["REQUEST_URI"] = environ["RAW_URI"] = head.target.decode("latin-1")
    version = head.http_version
    environ["SERVER_PROTOCOL"] = _PROTOCOLS.get(version) or "HTTP/" + version

    authority = head.authority
    if authority:
        # RFC 9112 §3.2.2: with an absolute-form target the server MUST ignore Host and use
        # the target's authority; RFC 9113 §8.3.1 likewise prefers :authority over Host.
        environ["HTTP_HOST"] = authority.decode("latin-1")
        host = authority
    if host:
        server_name, server_port = _split_host(host)
        if not server_port:
            server_port = "443" if url_scheme == "https" else "80"
    elif local is not None:
        address = local[0]
        server_name = f"[{address}]" if ":" in address else address
        server_port = str(local[1])
    else:
        # A unix socket and no Host (HTTP/1.0): PEP 3333 requires a non-empty SERVER_PORT;
        # gunicorn gives a unix socket the scheme's default port, and so do we.
        server_name = "localhost"
        server_port = "443" if url_scheme == "https" else "80"
    environ["SERVER_NAME"] = server_name
    environ["SERVER_PORT"] = server_port

    if peer is not None:
        environ["REMOTE_ADDR"] = peer[0]
        # Port 0: a proxy header named the client without its port (http/forwarded.py).
        environ["REMOTE_PORT"] = str(peer[1]) if peer[1] else ""
    else:
        environ["REMOTE_ADDR"] = environ["REMOTE_PORT"] = ""

    environ["wsgi.url_scheme"] = url_scheme
    environ["wsgi.input"] = wsgi_input
    environ["wsgi.errors"] = errors
    return environ
