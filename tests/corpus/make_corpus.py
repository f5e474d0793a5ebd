"""Writes tests/corpus/{valid,invalid}: raw requests (byte-exact, CRLF) and expectations.

Run `python tests/corpus/make_corpus.py` after editing a case; the .http files are
committed so a reviewer can read exactly what goes on the wire. Expectations in
valid/NAME.json are the events H1Parser must produce (bytes as latin-1 strings,
consecutive Data merged); invalid/expected.json maps NAME to the status (and any
Limits overrides).
"""

# ruff: noqa: E501  (one request per line reads best as a table)
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def req(line: str, *headers: str, body: bytes = b"") -> bytes:
    return "".join(f"{x}\r\n" for x in (line, *headers)).encode("latin-1") + b"\r\n" + body


def head(method, target, headers, *, path=None, query="", version="1.1", keep_alive=True,
         expect=False, length=None, chunked=False, authority=None):  # fmt: skip
    return {
        "type": "head", "method": method, "target": target,
        "path": path if path is not None else target.split("?")[0], "query": query,
        "version": version, "headers": [list(h) for h in headers], "keep_alive": keep_alive,
        "expect_continue": expect, "content_length": length, "chunked": chunked,
        "authority": authority,
    }  # fmt: skip


def body(data: str) -> dict[str, object]:
    return {"type": "body", "data": data}


def end(*trailers: tuple[str, str]) -> dict[str, object]:
    return {"type": "end", "trailers": [list(t) for t in trailers]}


H = ("Host", "example.com")
HOST = "Host: example.com"
CHUNKED = "Transfer-Encoding: chunked"

VALID: dict[str, tuple[bytes, list[dict[str, object]]]] = {
    "simple_get": (req("GET / HTTP/1.1", HOST), [head("GET", "/", [H]), end()]),
    "browser_get": (
        req(
            "GET /articles/2024/page?utm_source=x&b=%20 HTTP/1.1",
            HOST,
            f"User-Agent: {UA}",
            "Accept: text/html,application/xhtml+xml,*/*;q=0.8",
            "Accept-Language: en-US,en;q=0.5",
            "Accept-Encoding: gzip, deflate, br",
            "Connection: keep-alive",
            "Cookie: sessionid=abc123",
        ),
        [
            head(
                "GET",
                "/articles/2024/page?utm_source=x&b=%20",
                [
                    H,
                    ("User-Agent", UA),
                    ("Accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
                    ("Accept-Language", "en-US,en;q=0.5"),
                    ("Accept-Encoding", "gzip, deflate, br"),
                    ("Connection", "keep-alive"),
                    ("Cookie", "sessionid=abc123"),
                ],
                query="utm_source=x&b=%20",
            ),  # fmt: skip
            end(),
        ],
    ),
    "percent_encoded_path": (
        req("GET /a%2Fb/%E2%82%AC?q=%26 HTTP/1.1", HOST),
        [head("GET", "/a%2Fb/%E2%82%AC?q=%26", [H], query="q=%26"), end()],
    ),
    "empty_query": (req("GET /x? HTTP/1.1", HOST), [head("GET", "/x?", [H], path="/x"), end()]),
    "fragment_dropped": (
        req("GET /a?b#frag HTTP/1.1", HOST),
        [head("GET", "/a?b#frag", [H], path="/a", query="b"), end()],
    ),
    "absolute_form": (
        req("GET http://h:1/p?q HTTP/1.1", "Host: h:1"),
        [
            head("GET", "http://h:1/p?q", [("Host", "h:1")], path="/p", query="q", authority="h:1"),
            end(),
        ],
    ),  # fmt: skip
    "absolute_form_empty_path": (
        req("GET HTTPS://h?x HTTP/1.1", "Host: other"),
        [
            head("GET", "HTTPS://h?x", [("Host", "other")], path="/", query="x", authority="h"),
            end(),
        ],
    ),  # fmt: skip
    "asterisk_options": (
        req("OPTIONS * HTTP/1.1", HOST),
        [head("OPTIONS", "*", [H], path="*"), end()],
    ),
    "post_content_length": (
        req("POST /form HTTP/1.1", HOST, "Content-Length: 11", body=b"hello world"),
        [
            head("POST", "/form", [H, ("Content-Length", "11")], length=11),
            body("hello world"),
            end(),
        ],
    ),  # fmt: skip
    "content_length_zero_padded": (
        req("PUT /x HTTP/1.1", HOST, "Content-Length: 003  ", body=b"abc"),
        [head("PUT", "/x", [H, ("Content-Length", "003")], length=3), body("abc"), end()],
    ),
    "get_with_body": (
        req("GET / HTTP/1.1", HOST, "Content-Length: 2", body=b"{}"),
        [head("GET", "/", [H, ("Content-Length", "2")], length=2), body("{}"), end()],
    ),
    "post_chunked": (
        req("POST /up HTTP/1.1", HOST, CHUNKED, body=b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
        [
            head("POST", "/up", [H, ("Transfer-Encoding", "chunked")], chunked=True),
            body("hello world"),
            end(),
        ],
    ),  # fmt: skip
    "chunked_hex_sizes": (
        req(
            "POST / HTTP/1.1",
            HOST,
            "Transfer-Encoding: CHUNKED",
            body=b"0000A\r\n0123456789\r\nb\r\nabcdefghijk\r\n0\r\n\r\n",
        ),
        [
            head("POST", "/", [H, ("Transfer-Encoding", "CHUNKED")], chunked=True),
            body("0123456789abcdefghijk"),
            end(),
        ],
    ),  # fmt: skip
    "chunked_extensions": (
        req("POST / HTTP/1.1", HOST, CHUNKED, body=b'3;a=b;c="d e"\r\nabc\r\n0;z\r\n\r\n'),
        [
            head("POST", "/", [H, ("Transfer-Encoding", "chunked")], chunked=True),
            body("abc"),
            end(),
        ],
    ),  # fmt: skip
    "chunked_trailers": (
        req(
            "POST / HTTP/1.1",
            HOST,
            CHUNKED,
            "Trailer: X-Sum",
            body=b"2\r\nhi\r\n0\r\nX-Sum: 42 \r\nX-Other:\r\n\r\n",
        ),
        [
            head(
                "POST",
                "/",
                [H, ("Transfer-Encoding", "chunked"), ("Trailer", "X-Sum")],
                chunked=True,
            ),
            body("hi"),
            end(("X-Sum", "42"), ("X-Other", "")),
        ],
    ),  # fmt: skip
    "transfer_encoding_list_empty_items": (
        req("POST / HTTP/1.1", HOST, "Transfer-Encoding: , chunked", body=b"1\r\nx\r\n0\r\n\r\n"),
        [
            head("POST", "/", [H, ("Transfer-Encoding", ", chunked")], chunked=True),
            body("x"),
            end(),
        ],
    ),  # fmt: skip
    "http10_get": (
        req("GET /old HTTP/1.0", "User-Agent: old"),
        [head("GET", "/old", [("User-Agent", "old")], version="1.0", keep_alive=False), end()],
    ),
    "http10_keep_alive_pipelined": (
        req("GET /1 HTTP/1.0", "Connection: Keep-Alive") + req("GET /2 HTTP/1.0"),
        [
            head("GET", "/1", [("Connection", "Keep-Alive")], version="1.0"),
            end(),
            head("GET", "/2", [], version="1.0", keep_alive=False),
            end(),
        ],
    ),  # fmt: skip
    "http11_connection_close": (
        req("GET / HTTP/1.1", HOST, "Connection: close"),
        [head("GET", "/", [H, ("Connection", "close")], keep_alive=False), end()],
    ),
    "connection_list_with_close": (
        req("GET / HTTP/1.1", HOST, "Connection: foo, CLOSE"),
        [head("GET", "/", [H, ("Connection", "foo, CLOSE")], keep_alive=False), end()],
    ),
    "bytes_after_close_ignored": (
        req("GET / HTTP/1.1", HOST, "Connection: close") + b"GET /2 HTTP/1.1\r\nnonsense\x00",
        [head("GET", "/", [H, ("Connection", "close")], keep_alive=False), end()],
    ),
    "pipelined_gets": (
        req("GET /1 HTTP/1.1", HOST)
        + req("HEAD /2 HTTP/1.1", HOST)
        + req("DELETE /3 HTTP/1.1", HOST),
        [
            head("GET", "/1", [H]),
            end(),
            head("HEAD", "/2", [H]),
            end(),
            head("DELETE", "/3", [H]),
            end(),
        ],
    ),  # fmt: skip
    "pipelined_bodies": (
        req("POST /a HTTP/1.1", HOST, "Content-Length: 3", body=b"abc")
        + req("POST /b HTTP/1.1", HOST, CHUNKED, body=b"2\r\nde\r\n0\r\n\r\n")
        + req("GET /c HTTP/1.1", HOST),
        [
            head("POST", "/a", [H, ("Content-Length", "3")], length=3),
            body("abc"),
            end(),
            head("POST", "/b", [H, ("Transfer-Encoding", "chunked")], chunked=True),
            body("de"),
            end(),
            head("GET", "/c", [H]),
            end(),
        ],
    ),  # fmt: skip
    "expect_continue": (
        req("PUT /f HTTP/1.1", HOST, "Expect: 100-Continue", "Content-Length: 1", body=b"x"),
        [
            head(
                "PUT",
                "/f",
                [H, ("Expect", "100-Continue"), ("Content-Length", "1")],
                expect=True,
                length=1,
            ),
            body("x"),
            end(),
        ],
    ),  # fmt: skip
    "expect_continue_ignored_on_http10": (
        req("PUT /f HTTP/1.0", "Expect: 100-continue", "Content-Length: 1", body=b"x"),
        [
            head(
                "PUT",
                "/f",
                [("Expect", "100-continue"), ("Content-Length", "1")],
                version="1.0",
                keep_alive=False,
                length=1,
            ),
            body("x"),
            end(),
        ],
    ),  # fmt: skip
    "ows_and_empty_values": (
        req("GET / HTTP/1.1", "Host:   example.com \t", "X-Empty:", "X-Spaces:   ", "X-In: a  b"),
        [head("GET", "/", [H, ("X-Empty", ""), ("X-Spaces", ""), ("X-In", "a  b")]), end()],
    ),
    "obs_text_value": (
        req("GET / HTTP/1.1", HOST, "X-Name: caf\xe9"),
        [head("GET", "/", [H, ("X-Name", "caf\xe9")]), end()],
    ),
    "header_name_case_kept": (
        req("GET / HTTP/1.1", "hOsT: example.com", "x-lower: 1", "X-UPPER: 2"),
        [head("GET", "/", [("hOsT", "example.com"), ("x-lower", "1"), ("X-UPPER", "2")]), end()],
    ),
    "leading_empty_lines": (
        b"\r\n\r\n" + req("GET / HTTP/1.1", HOST),
        [head("GET", "/", [H]), end()],
    ),
    "extension_methods": (
        req("PROPFIND /dav HTTP/1.1", HOST, "Depth: 1") + req("QUERY /q HTTP/1.1", HOST),
        [head("PROPFIND", "/dav", [H, ("Depth", "1")]), end(), head("QUERY", "/q", [H]), end()],
    ),
    # RFC 9110 §9.1: any token is a method; llhttp's list does not bound what reaches the app
    "methods_llhttp_does_not_know": (
        req("FOO /a HTTP/1.1", HOST)
        + req("-BLARGH /b HTTP/1.1", HOST, "Content-Length: 2", body=b"hi")
        + req("DESCRIBE /c HTTP/1.1", HOST)
        + req("X_1.2~! /d HTTP/1.1", HOST, CHUNKED, body=b"1\r\nx\r\n0\r\n\r\n")
        + req("GET /e HTTP/1.1", HOST),
        [
            head("FOO", "/a", [H]),
            end(),
            head("-BLARGH", "/b", [H, ("Content-Length", "2")], length=2),
            body("hi"),
            end(),
            head("DESCRIBE", "/c", [H]),
            end(),
            head("X_1.2~!", "/d", [H, ("Transfer-Encoding", "chunked")], chunked=True),
            body("x"),
            end(),
            head("GET", "/e", [H]),
            end(),
        ],
    ),  # fmt: skip
    # RFC 9112 §7.1.1: BWS around ";" and "=", token or quoted-string values
    "chunk_extensions_with_whitespace": (
        req(
            "POST / HTTP/1.1",
            HOST,
            CHUNKED,
            body=b'2 ;a\r\nhi\r\n1; b=c\r\n!\r\n3\t;\td = "q\\"s;x"\r\nabc\r\n0 ; e\r\n\r\n',
        )
        + req("GET /next HTTP/1.1", HOST),
        [
            head("POST", "/", [H, ("Transfer-Encoding", "chunked")], chunked=True),
            body("hi!abc"),
            end(),
            head("GET", "/next", [H]),
            end(),
        ],
    ),  # fmt: skip
    "upgrade_served_as_ordinary": (
        req("GET /ws HTTP/1.1", HOST, "Upgrade: websocket", "Connection: Upgrade")
        + req("GET /next HTTP/1.1", HOST),
        [
            head("GET", "/ws", [H, ("Upgrade", "websocket"), ("Connection", "Upgrade")]),
            end(),
            head("GET", "/next", [H]),
            end(),
        ],
    ),  # fmt: skip
    "upgrade_with_body": (
        req(
            "POST /h2c HTTP/1.1",
            HOST,
            "Connection: Upgrade, HTTP2-Settings",
            "Upgrade: h2c",
            "HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA",
            "Content-Length: 5",
            body=b"hello",
        )
        + req(
            "POST /c HTTP/1.1",
            HOST,
            "Upgrade: x",
            "Connection: upgrade",
            CHUNKED,
            body=b"3\r\nabc\r\n0\r\n\r\n",
        )
        + req("GET /next HTTP/1.1", HOST),
        [
            head(
                "POST",
                "/h2c",
                [
                    H,
                    ("Connection", "Upgrade, HTTP2-Settings"),
                    ("Upgrade", "h2c"),
                    ("HTTP2-Settings", "AAMAAABkAAQAoAAAAAIAAAAA"),
                    ("Content-Length", "5"),
                ],
                length=5,
            ),
            body("hello"),
            end(),
            head(
                "POST",
                "/c",
                [H, ("Upgrade", "x"), ("Connection", "upgrade"), ("Transfer-Encoding", "chunked")],
                chunked=True,
            ),
            body("abc"),
            end(),
            head("GET", "/next", [H]),
            end(),
        ],
    ),  # fmt: skip
    "empty_host_with_absolute_form": (
        req("GET http://example.com/ HTTP/1.1", "Host:"),
        [
            head("GET", "http://example.com/", [("Host", "")], path="/", authority="example.com"),
            end(),
        ],
    ),  # fmt: skip
    "ipv6_host": (
        req("GET / HTTP/1.1", "Host: [::1]:8080"),
        [head("GET", "/", [("Host", "[::1]:8080")]), end()],
    ),
}

LONG = "a" * 9000
INVALID: dict[str, tuple[bytes, int | dict[str, object]]] = {
    # RFC 9112 §6.1/§6.3/§11: framing that could smuggle a second request
    "cl_and_te": (req("POST / HTTP/1.1", HOST, "Content-Length: 5", CHUNKED, body=b"0\r\n\r\n"), 400),
    "te_and_cl": (req("POST / HTTP/1.1", HOST, CHUNKED, "Content-Length: 5", body=b"0\r\n\r\n"), 400),
    "cl_duplicate_differing": (req("POST / HTTP/1.1", HOST, "Content-Length: 5", "Content-Length: 6", body=b"helloo"), 400),
    "cl_duplicate_identical": (req("POST / HTTP/1.1", HOST, "Content-Length: 5", "Content-Length: 5", body=b"hello"), 400),
    "cl_list": (req("POST / HTTP/1.1", HOST, "Content-Length: 5, 5", body=b"hello"), 400),
    "cl_negative": (req("POST / HTTP/1.1", HOST, "Content-Length: -5", body=b"hello"), 400),
    "cl_plus_sign": (req("POST / HTTP/1.1", HOST, "Content-Length: +5", body=b"hello"), 400),
    "cl_not_numeric": (req("POST / HTTP/1.1", HOST, "Content-Length: 5a", body=b"hello"), 400),
    "cl_inner_space": (req("POST / HTTP/1.1", HOST, "Content-Length: 1 2", body=b"hello"), 400),
    "cl_empty": (req("POST / HTTP/1.1", HOST, "Content-Length:", body=b"hello"), 400),
    "cl_overflow": (req("POST / HTTP/1.1", HOST, "Content-Length: 99999999999999999999999"), 400),
    "te_final_not_chunked": (req("POST / HTTP/1.1", HOST, "Transfer-Encoding: gzip", body=b"x"), 400),
    "te_chunked_then_gzip": (req("POST / HTTP/1.1", HOST, "Transfer-Encoding: chunked, gzip", body=b"0\r\n\r\n"), 400),
    "te_chunked_twice": (req("POST / HTTP/1.1", HOST, "Transfer-Encoding: chunked, chunked", body=b"0\r\n\r\n"), 400),
    "te_unknown_name": (req("POST / HTTP/1.1", HOST, "Transfer-Encoding: xchunked", body=b"0\r\n\r\n"), 400),
    "te_with_parameters": (req("POST / HTTP/1.1", HOST, "Transfer-Encoding: chunked;q=1", body=b"0\r\n\r\n"), 400),
    "te_empty": (req("POST / HTTP/1.1", HOST, "Transfer-Encoding:", body=b"0\r\n\r\n"), 400),
    "te_gzip_chunked_undecodable": (req("POST / HTTP/1.1", HOST, "Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n"), 501),
    "te_split_over_two_fields": (req("POST / HTTP/1.1", HOST, "Transfer-Encoding: gzip", CHUNKED, body=b"0\r\n\r\n"), 501),
    "te_in_http10": (req("POST / HTTP/1.0", CHUNKED, body=b"5\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk_size_not_hex": (req("POST / HTTP/1.1", HOST, CHUNKED, body=b"zz\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk_size_overflow": (req("POST / HTTP/1.1", HOST, CHUNKED, body=b"fffffffffffffffff1\r\nx\r\n0\r\n\r\n"), 400),
    "chunk_size_negative": (req("POST / HTTP/1.1", HOST, CHUNKED, body=b"-5\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk_size_0x": (req("POST / HTTP/1.1", HOST, CHUNKED, body=b"0x5\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk_size_trailing_space": (req("POST / HTTP/1.1", HOST, CHUNKED, body=b"5 \r\nhello\r\n0\r\n\r\n"), 400),
    "chunk_data_longer_than_size": (req("POST / HTTP/1.1", HOST, CHUNKED, body=b"5\r\nhelloXX\r\n0\r\n\r\n"), 400),
    "chunk_bare_lf": (req("POST / HTTP/1.1", HOST, CHUNKED, body=b"5\nhello\n0\n\n"), 400),
    "chunk_extension_bad": (req("POST / HTTP/1.1", HOST, CHUNKED, body=b"5;a b\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk_extension_no_name": (req("POST / HTTP/1.1", HOST, CHUNKED, body=b"5;=v\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk_extension_empty_value": (req("POST / HTTP/1.1", HOST, CHUNKED, body=b"5;a=\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk_extension_open_quote": (req("POST / HTTP/1.1", HOST, CHUNKED, body=b'5;a="x\r\nhello\r\n0\r\n\r\n'), 400),
    "chunk_extension_no_semicolon": (req("POST / HTTP/1.1", HOST, CHUNKED, body=b"5 a\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk_extension_in_last_chunk": (req("POST / HTTP/1.1", HOST, CHUNKED, body=b"0;=\r\n\r\n"), 400),
    "trailer_obs_fold": (req("POST / HTTP/1.1", HOST, CHUNKED, body=b"0\r\nX: a\r\n b\r\n\r\n"), 400),
    "trailer_without_colon": (req("POST / HTTP/1.1", HOST, CHUNKED, body=b"0\r\nX\r\n\r\n"), 400),
    "chunk_body_over_limit": (
        req("POST / HTTP/1.1", HOST, CHUNKED, body=b"8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n"),
        {"status": 413, "limits": {"max_body_bytes": 10}},
    ),
    "content_length_over_limit": (
        req("POST / HTTP/1.1", HOST, "Content-Length: 11", body=b"hello world"),
        {"status": 413, "limits": {"max_body_bytes": 10}},
    ),
    # RFC 9112 §5: field syntax
    "obs_fold_space": (req("GET / HTTP/1.1", HOST, "X: a", " b"), 400),
    "obs_fold_tab": (req("GET / HTTP/1.1", HOST, "X: a", "\tb"), 400),
    "whitespace_before_first_field": (req("GET / HTTP/1.1", " Host: example.com"), 400),
    "nul_in_value": (req("GET / HTTP/1.1", HOST, "X: a\x00b"), 400),
    "cr_in_value": (req("GET / HTTP/1.1", HOST, "X: a\rb"), 400),
    "ctl_in_value": (req("GET / HTTP/1.1", HOST, "X: a\x01b"), 400),
    "bare_lf_line_end": (b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400),
    "bare_lf_request": (b"GET / HTTP/1.1\nHost: a\n\n", 400),
    "space_before_colon": (req("GET / HTTP/1.1", "Host : example.com"), 400),
    "tab_before_colon": (req("GET / HTTP/1.1", HOST, "X\t: 1"), 400),
    "invalid_name_char": (req("GET / HTTP/1.1", HOST, "X(y): 1"), 400),
    "non_ascii_name": (req("GET / HTTP/1.1", HOST, "X\xe9: 1"), 400),
    "empty_name": (req("GET / HTTP/1.1", HOST, ": 1"), 400),
    "line_without_colon": (req("GET / HTTP/1.1", HOST, "NoColon"), 400),
    "cr_without_lf_at_end": (b"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", 400),
    # RFC 9112 §3.2: Host
    "missing_host": (req("GET / HTTP/1.1", "Accept: */*"), 400),
    "two_hosts": (req("GET / HTTP/1.1", HOST, "host: other.com"), 400),
    "two_hosts_http10": (req("GET / HTTP/1.0", HOST, HOST), 400),
    "invalid_host": (req("GET / HTTP/1.1", "Host: a b"), 400),
    # RFC 9112 §3: request line
    "method_with_bad_char": (req("G(T / HTTP/1.1", HOST), 400),
    # gunicorn, waitress and nginx refuse methods with lowercase letters
    "method_lowercase": (req("get / HTTP/1.1", HOST), 400),
    "method_mixed_case": (req("PoST / HTTP/1.1", HOST), 400),
    "method_too_long": (req("A" * 65 + " / HTTP/1.1", HOST), 400),
    "method_then_tab_after_valid": (req("GET / HTTP/1.1", HOST) + req("FOO\t/ HTTP/1.1", HOST), 400),
    "method_tab_separator": (req("GET\t/ HTTP/1.1", HOST), 400),
    "leading_space": (b" " + req("GET / HTTP/1.1", HOST), 400),
    "tls_handshake": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
    "connect": (req("CONNECT example.com:443 HTTP/1.1", "Host: example.com:443"), 501),
    "asterisk_not_options": (req("GET * HTTP/1.1", HOST), 400),
    "authority_form_not_connect": (req("GET example.com:443 HTTP/1.1", HOST), 400),
    "absolute_form_userinfo": (req("GET http://user@h/p HTTP/1.1", HOST), 400),
    "absolute_form_other_scheme": (req("GET ftp://h/p HTTP/1.1", HOST), 400),
    "absolute_form_empty_host": (req("GET http:///p HTTP/1.1", HOST), 400),
    "relative_target": (req("GET p HTTP/1.1", HOST), 400),
    "target_with_space": (req("GET /a b HTTP/1.1", HOST), 400),
    "target_with_control": (req("GET /a\x01b HTTP/1.1", HOST), 400),
    "target_with_high_byte": (req("GET /caf\xe9 HTTP/1.1", HOST), 400),
    "version_lowercase": (req("GET / http/1.1", HOST), 400),
    "version_not_digit": (req("GET / HTTP/x.1", HOST), 400),
    "version_three_digits": (req("GET / HTTP/1.11", HOST), 400),
    "version_trailing_space": (req("GET / HTTP/1.1 ", HOST), 400),
    "version_1_2": (req("GET / HTTP/1.2", HOST), 505),
    "version_2_0": (req("GET / HTTP/2.0", HOST), 505),
    "version_3_0": (req("GET / HTTP/3.0", HOST), 505),
    "version_0_9": (req("GET / HTTP/0.9", HOST), 505),
    "http2_preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    # limits (RFC 9112 §3: 414; RFC 6585 §5: 431)
    "request_line_too_long": (req(f"GET /{LONG} HTTP/1.1", HOST), 414),
    "request_line_too_long_unfinished": (f"GET /{LONG}".encode(), 414),
    "too_many_headers": (
        req("GET / HTTP/1.1", HOST, *[f"X-{i}: {i}" for i in range(5)]),
        {"status": 431, "limits": {"max_header_count": 5}},
    ),
    "header_block_too_large": (req("GET / HTTP/1.1", HOST, f"X: {'b' * 17000}"), 431),
    "header_block_too_large_unfinished": (f"GET / HTTP/1.1\r\n{HOST}\r\nX: {'b' * 30000}".encode(), 431),
    "trailers_too_large": (
        req("POST / HTTP/1.1", HOST, CHUNKED, body=b"0\r\nX: " + b"t" * 200 + b"\r\n\r\n"),
        {"status": 431, "limits": {"max_header_bytes": 100}},
    ),
    # truncated by EOF
    "eof_in_head": (b"GET / HTTP/1.1\r\nHost: exa", 400),
    "eof_in_body": (req("POST / HTTP/1.1", HOST, "Content-Length: 10", body=b"short"), 400),
    "eof_in_chunked_body": (req("POST / HTTP/1.1", HOST, CHUNKED, body=b"5\r\nhello\r\n"), 400),
    "eof_in_method": (b"GE", 400),
    "error_after_valid_request": (req("GET / HTTP/1.1", HOST) + b"GET / HTTP/1.1\r\nX : y\r\n\r\n", 400),
}  # fmt: skip


def main() -> None:
    for folder in ("valid", "invalid"):
        for old in (HERE / folder).glob("*"):
            old.unlink()
    for name, (raw, events) in VALID.items():
        (HERE / "valid" / f"{name}.http").write_bytes(raw)
        (HERE / "valid" / f"{name}.json").write_text(json.dumps(events, indent=1) + "\n")
    expected = {}
    for name, (raw, want) in INVALID.items():
        (HERE / "invalid" / f"{name}.http").write_bytes(raw)
        expected[name] = want if isinstance(want, dict) else {"status": want}
    text = json.dumps(expected, indent=1, sort_keys=True)
    (HERE / "invalid" / "expected.json").write_text(text + "\n")
    print(f"{len(VALID)} valid, {len(INVALID)} invalid")


if __name__ == "__main__":
    main()
