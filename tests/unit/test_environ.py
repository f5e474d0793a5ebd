"""PEP 3333 environ building: keys, latin-1 rules, Host forms, header hygiene."""

from __future__ import annotations

import io
import urllib.parse
import wsgiref.validate
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from treadle.http.events import RequestHead
from treadle.wsgi import environ as environ_module
from treadle.wsgi.body import EMPTY_BODY, BufferedBody
from treadle.wsgi.environ import build_environ, decode_path, split_script_name

BROWSER_HEADERS = [
    (b"Host", b"example.com:8000"),
    (b"User-Agent", b"Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"),
    (b"Accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    (b"Accept-Language", b"en-US,en;q=0.5"),
    (b"Accept-Encoding", b"gzip, deflate, br"),
    (b"Connection", b"keep-alive"),
    (b"Cookie", b"sessionid=abc123"),
    (b"Upgrade-Insecure-Requests", b"1"),
    (b"Sec-Fetch-Dest", b"document"),
    (b"Referer", b"http://example.com:8000/"),
]


def make_head(
    target: bytes = b"/",
    headers: Iterable[tuple[bytes, bytes]] = ((b"Host", b"example.com"),),
    *,
    method: bytes = b"GET",
    http_version: str = "1.1",
    authority: bytes | None = None,
    path: bytes | None = None,
) -> RequestHead:
    split_path, _, query = target.partition(b"?")
    return RequestHead(
        method=method,
        target=target,
        path=split_path if path is None else path,
        query=query,
        http_version=http_version,
        headers=list(headers),
        authority=authority,
    )


def environ_for(
    head: RequestHead,
    *,
    url_scheme: str = "http",
    local: tuple[str, int] | None = ("10.0.0.1", 8000),
    peer: tuple[str, int] | None = ("192.0.2.7", 50123),
    script_name: str = "",
    multiprocess: bool = False,
    wsgi_input: object = EMPTY_BODY,
    errors: object = None,
    content_length: int | None = None,
) -> dict[str, Any]:
    path_info = split_script_name(decode_path(head.path), script_name)
    assert path_info is not None
    return build_environ(
        head,
        url_scheme=url_scheme,
        local=local,
        peer=peer,
        script_name=script_name,
        path_info=path_info,
        multiprocess=multiprocess,
        wsgi_input=wsgi_input,
        errors=io.StringIO() if errors is None else errors,
        content_length=content_length,
    )


# -- split_script_name ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "script_name", "expected"),
    [
        ("/x/y", "", "/x/y"),
        ("/app", "/app", ""),
        ("/app/", "/app", "/"),
        ("/app/x", "/app", "/x"),
        ("/app/x", "/app/", "/x"),
        ("/apple", "/app", None),
        ("/other", "/app", None),
        ("/", "/app", None),
        ("/a/b/c", "/a/b", "/c"),
        ("/x", "/", "/x"),
    ],
)
def test_split_script_name(path: str, script_name: str, expected: str | None) -> None:
    assert split_script_name(path, script_name) == expected


# -- decode_path -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"/plain/path", "/plain/path"),
        (b"/caf%C3%A9", "/caf\u00c3\u00a9"),  # UTF-8 bytes as latin-1 chars: 'Ã©'
        (b"/a%2Fb", "/a/b"),  # PEP 3333: PATH_INFO is decoded, %2F included
        (b"/sp%20ace", "/sp ace"),
        (b"/raw\xe9", "/raw\u00e9"),  # a raw non-ASCII byte stays one latin-1 char
        (b"/bad%zzescape%", "/bad%zzescape%"),  # invalid escapes are kept, never an error
        (b"/plus+sign", "/plus+sign"),  # '+' is not a space in a path
    ],
)
def test_decode_path(raw: bytes, expected: str) -> None:
    assert decode_path(raw) == expected


def test_decoded_path_round_trips_to_utf8_as_apps_do() -> None:
    decoded = decode_path(b"/caf%C3%A9")
    assert decoded.encode("latin-1").decode("utf-8") == "/café"


@given(st.binary(max_size=200))
def test_any_path_bytes_decode_to_latin1_of_unquoted(raw: bytes) -> None:
    decoded = decode_path(raw)
    assert isinstance(decoded, str)
    assert decoded.encode("latin-1") == urllib.parse.unquote_to_bytes(raw)


@given(st.lists(st.sampled_from([b"/", b"a", b"%", b"%2", b"%2F", b"%C3%A9", b"\xff", b"%zz"])))
def test_escape_heavy_paths_decode_like_unquote(parts: list[bytes]) -> None:
    raw = b"".join(parts)
    assert decode_path(raw).encode("latin-1") == urllib.parse.unquote_to_bytes(raw)


# -- build_environ: the PEP 3333 keys ---------------------------------------------------


def test_every_required_key_for_a_browser_request() -> None:
    head = make_head(b"/shop/caf%C3%A9?q=caf%C3%A9&x=1+2", BROWSER_HEADERS)
    body = EMPTY_BODY
    errors = io.StringIO()
    environ = environ_for(
        head,
        script_name="/shop",
        wsgi_input=body,
        errors=errors,
        peer=("192.0.2.7", 50123),
    )
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["SCRIPT_NAME"] == "/shop"
    assert environ["PATH_INFO"] == "/caf\u00c3\u00a9"
    assert environ["QUERY_STRING"] == "q=caf%C3%A9&x=1+2"  # raw, never unquoted
    assert environ["REQUEST_URI"] == "/shop/caf%C3%A9?q=caf%C3%A9&x=1+2"
    assert environ["RAW_URI"] == environ["REQUEST_URI"]
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["SERVER_NAME"] == "example.com"
    assert environ["SERVER_PORT"] == "8000"
    assert environ["REMOTE_ADDR"] == "192.0.2.7"
    assert environ["REMOTE_PORT"] == "50123"
    assert environ["HTTP_HOST"] == "example.com:8000"
    assert environ["HTTP_USER_AGENT"].startswith("Mozilla/5.0")
    assert environ["HTTP_ACCEPT_LANGUAGE"] == "en-US,en;q=0.5"
    assert environ["HTTP_UPGRADE_INSECURE_REQUESTS"] == "1"
    assert environ["HTTP_SEC_FETCH_DEST"] == "document"
    assert environ["HTTP_COOKIE"] == "sessionid=abc123"
    assert environ["wsgi.version"] == (1, 0)
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["wsgi.input"] is body
    assert environ["wsgi.errors"] is errors
    assert environ["wsgi.multithread"] is True
    assert environ["wsgi.multiprocess"] is False
    assert environ["wsgi.run_once"] is False
    assert environ["wsgi.input_terminated"] is True
    assert "CONTENT_TYPE" not in environ
    assert "CONTENT_LENGTH" not in environ


def test_all_cgi_values_are_native_str() -> None:
    head = make_head(b"/p?q", [*BROWSER_HEADERS, (b"Content-Type", b"text/plain")])
    environ = environ_for(head, content_length=3)
    for key, value in environ.items():
        if "." not in key:
            assert type(value) is str, key


def test_environ_passes_wsgiref_validate() -> None:
    """wsgiref.validate checks key presence, value types and wsgi.input/errors shape."""
    body = BufferedBody(spool_threshold_bytes=1024)
    body.feed(b"name=value\nsecond line\n")
    body.finish()
    head = make_head(
        b"/form?x=1",
        [*BROWSER_HEADERS, (b"Content-Type", b"application/x-www-form-urlencoded")],
        method=b"POST",
    )
    environ = environ_for(head, wsgi_input=body, content_length=body.length)
    seen: dict[str, object] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        stream = environ["wsgi.input"]
        seen["line"] = stream.readline(4)
        seen["rest"] = stream.read(int(environ["CONTENT_LENGTH"]))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        return lambda data: None

    result: Any = wsgiref.validate.validator(app)(environ, start_response)
    assert list(result) == [b"ok"]
    result.close()
    assert seen == {"line": b"name", "rest": b"=value\nsecond line\n"}


def test_protocol_versions() -> None:
    assert environ_for(make_head(http_version="1.0"))["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert environ_for(make_head(http_version="2"))["SERVER_PROTOCOL"] == "HTTP/2"


def test_unusual_method_is_passed_through() -> None:
    environ = environ_for(make_head(method=b"PROPFIND"))
    assert environ["REQUEST_METHOD"] == "PROPFIND"


def test_multiprocess_flag_and_https_scheme() -> None:
    environ = environ_for(make_head(), multiprocess=True, url_scheme="https")
    assert environ["wsgi.multiprocess"] is True
    assert environ["wsgi.url_scheme"] == "https"


def test_base_template_is_not_shared_between_requests() -> None:
    first = environ_for(make_head())
    first["wsgi.run_once"] = "mutated"
    first["HTTP_X_LEAK"] = "1"
    second = environ_for(make_head())
    assert second["wsgi.run_once"] is False
    assert "HTTP_X_LEAK" not in second


# -- Host forms --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "scheme", "name", "port"),
    [
        (b"example.com", "http", "example.com", "80"),
        (b"example.com", "https", "example.com", "443"),
        (b"example.com:8000", "http", "example.com", "8000"),
        (b"example.com:", "http", "example.com", "80"),
        (b"127.0.0.1:8080", "https", "127.0.0.1", "8080"),
        (b"[::1]:8000", "http", "[::1]", "8000"),
        (b"[::1]", "https", "[::1]", "443"),
        (b"[2001:db8::7]:443", "https", "[2001:db8::7]", "443"),
        (b"example.com:abc", "http", "example.com", "80"),
    ],
)
def test_server_name_and_port_from_host(host: bytes, scheme: str, name: str, port: str) -> None:
    environ = environ_for(make_head(headers=[(b"Host", host)]), url_scheme=scheme)
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == (name, port)
    assert environ["HTTP_HOST"] == host.decode("latin-1")


def test_absolute_form_authority_wins_over_host() -> None:
    # RFC 9112 §3.2.2: the target's authority replaces the Host header.
    head = make_head(
        b"http://real.example:9000/x?y=1",
        [(b"Host", b"spoofed.example")],
        authority=b"real.example:9000",
        path=b"/x",
    )
    environ = environ_for(head)
    assert environ["SERVER_NAME"] == "real.example"
    assert environ["SERVER_PORT"] == "9000"
    assert environ["HTTP_HOST"] == "real.example:9000"
    assert environ["PATH_INFO"] == "/x"
    assert environ["REQUEST_URI"] == "http://real.example:9000/x?y=1"


def test_http2_authority_without_host_header_sets_http_host() -> None:
    head = make_head(b"/", [], http_version="2", authority=b"h2.example")
    environ = environ_for(head, url_scheme="https")
    assert environ["HTTP_HOST"] == "h2.example"
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("h2.example", "443")


def test_no_host_uses_local_address() -> None:
    environ = environ_for(make_head(headers=[], http_version="1.0"), local=("10.1.2.3", 8123))
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("10.1.2.3", "8123")
    assert "HTTP_HOST" not in environ


def test_empty_host_uses_local_address() -> None:
    environ = environ_for(make_head(headers=[(b"Host", b"")]), local=("10.1.2.3", 8123))
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("10.1.2.3", "8123")


def test_no_host_ipv6_local_address_is_bracketed() -> None:
    environ = environ_for(make_head(headers=[]), local=("::1", 8000))
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("[::1]", "8000")


def test_unix_socket_without_host() -> None:
    head = make_head(headers=[], http_version="1.0")
    environ = environ_for(head, local=None, peer=None)
    # PEP 3333: SERVER_PORT is never empty; the scheme's default, as gunicorn gives.
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("localhost", "80")
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("", "")
    environ = environ_for(head, url_scheme="https", local=None, peer=None)
    assert environ["SERVER_PORT"] == "443"


def test_a_streamed_chunked_body_keeps_transfer_encoding() -> None:
    # Without a computed length the app reads to the end of wsgi.input; TE is its only sign
    # that a body exists at all.
    head = make_head(headers=[(b"Host", b"h"), (b"Transfer-Encoding", b"chunked")])
    environ = environ_for(head)
    assert environ["HTTP_TRANSFER_ENCODING"] == "chunked" and "CONTENT_LENGTH" not in environ


def test_server_software_names_treadle_and_its_version() -> None:
    import treadle

    environ = environ_for(make_head())
    assert environ["SERVER_SOFTWARE"] == f"treadle/{treadle.__version__}"


def test_unix_socket_with_host_uses_host() -> None:
    environ = environ_for(make_head(headers=[(b"Host", b"site.example")]), local=None)
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("site.example", "80")


# -- headers ------------------------------------------------------------------------------


def test_content_headers_have_no_http_prefix() -> None:
    head = make_head(
        headers=[(b"Host", b"h"), (b"Content-Type", b"text/plain"), (b"content-length", b"12")],
        method=b"POST",
    )
    environ = environ_for(head)
    assert environ["CONTENT_TYPE"] == "text/plain"
    assert environ["CONTENT_LENGTH"] == "12"
    assert "HTTP_CONTENT_TYPE" not in environ
    assert "HTTP_CONTENT_LENGTH" not in environ


def test_content_length_argument_wins() -> None:
    # A buffered chunked body has no Content-Length header; the container passes its size.
    head = make_head(headers=[(b"Host", b"h"), (b"Transfer-Encoding", b"chunked")])
    environ = environ_for(head, content_length=4096)
    assert environ["CONTENT_LENGTH"] == "4096"
    # De-chunked: the app reads 4096 plain bytes; a proxying app must not copy TE beside CL.
    assert "HTTP_TRANSFER_ENCODING" not in environ
    head = make_head(headers=[(b"Host", b"h"), (b"Content-Length", b"10")])
    assert environ_for(head, content_length=0)["CONTENT_LENGTH"] == "0"


def test_header_names_with_underscores_are_dropped() -> None:
    head = make_head(
        headers=[
            (b"Host", b"h"),
            (b"X-Forwarded-For", b"203.0.113.9"),
            (b"X-Forwarded_For", b"1.2.3.4"),
            (b"x_custom", b"spoof"),
        ]
    )
    environ = environ_for(head)
    assert environ["HTTP_X_FORWARDED_FOR"] == "203.0.113.9"
    assert "HTTP_X_CUSTOM" not in environ
    assert not any(v in ("1.2.3.4", "spoof") for v in environ.values())


def test_header_names_any_case_map_to_the_same_key() -> None:
    head = make_head(headers=[(b"host", b"h"), (b"X-REQUEST-ID", b"a"), (b"x-request-id", b"b")])
    assert environ_for(head)["HTTP_X_REQUEST_ID"] == "a,b"


def test_repeated_headers_are_joined_with_commas() -> None:
    head = make_head(
        headers=[(b"Host", b"h"), (b"Accept", b"text/html"), (b"Accept", b"*/*"), (b"Accept", b"x")]
    )
    assert environ_for(head)["HTTP_ACCEPT"] == "text/html,*/*,x"


def test_repeated_cookie_headers_are_joined_with_semicolons() -> None:
    # RFC 6265 §5.4 (and HTTP/2 splits cookies into separate fields, RFC 9113 §8.2.3).
    head = make_head(headers=[(b"Host", b"h"), (b"Cookie", b"a=1"), (b"cookie", b"b=2")])
    assert environ_for(head)["HTTP_COOKIE"] == "a=1; b=2"


def test_header_values_are_latin1() -> None:
    head = make_head(headers=[(b"Host", b"h"), (b"X-Name", b"caf\xc3\xa9 \xff")])
    value = environ_for(head)["HTTP_X_NAME"]
    assert value == "caf\u00c3\u00a9 \u00ff"
    assert value.encode("latin-1") == b"caf\xc3\xa9 \xff"


def test_query_string_is_latin1_and_not_unquoted() -> None:
    head = make_head(b"/p?a=%41&b=\xe9+c")
    assert environ_for(head)["QUERY_STRING"] == "a=%41&b=\u00e9+c"


def test_many_distinct_header_names_do_not_grow_the_cache_without_bound() -> None:
    names = [f"X-Random-{i}".encode() for i in range(3000)]
    head = make_head(headers=[(b"Host", b"h"), *((n, b"v") for n in names)])
    environ = environ_for(head)
    assert environ["HTTP_X_RANDOM_2999"] == "v"
    assert len(environ_module._KEY_CACHE) <= environ_module._KEY_CACHE_MAX
