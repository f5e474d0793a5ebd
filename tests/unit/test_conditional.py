"""http/conditional.py on values: preconditions, ranges, codings and media types (RFC 9110).

Pure tier: no files, no clock; each case is the request's fields and a file's validators.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from treadle.http.conditional import (
    UNSATISFIABLE,
    accepted_codings,
    byte_range,
    content_type,
    evaluate,
    http_date,
)

ETAG = b'"5f-10"'
MTIME = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT
DATE = b"Sun, 06 Nov 1994 08:49:37 GMT"
EARLIER = b"Sat, 05 Nov 1994 08:49:37 GMT"
SIZE = 100


@pytest.mark.parametrize(
    ("method", "fields", "expected"),
    [
        (b"GET", {}, (200, None)),
        # §13.1.1 If-Match: strong comparison; a weak tag never matches.
        (b"GET", {b"if-match": ETAG}, (200, None)),
        (b"GET", {b"if-match": b'W/"5f-10"'}, (412, None)),
        (b"GET", {b"if-match": b"*"}, (200, None)),
        (b"GET", {b"if-match": b'"other", ' + ETAG}, (200, None)),
        # §13.1.4 If-Unmodified-Since: only without If-Match.
        (b"GET", {b"if-unmodified-since": EARLIER}, (412, None)),
        (b"GET", {b"if-unmodified-since": DATE}, (200, None)),
        (b"GET", {b"if-match": ETAG, b"if-unmodified-since": EARLIER}, (200, None)),
        (b"GET", {b"if-unmodified-since": b"not a date"}, (200, None)),
        # §13.1.2 If-None-Match: weak comparison.
        (b"GET", {b"if-none-match": b'W/"5f-10"'}, (304, None)),
        (b"GET", {b"if-none-match": b'"other"'}, (200, None)),
        # §13.1.3 If-Modified-Since: only without If-None-Match.
        (b"GET", {b"if-modified-since": DATE}, (304, None)),
        (b"GET", {b"if-modified-since": EARLIER}, (200, None)),
        (b"GET", {b"if-none-match": b'"other"', b"if-modified-since": DATE}, (200, None)),
        # §13.2.2 order: a failed If-Match wins over a matching If-None-Match.
        (b"GET", {b"if-match": b'"other"', b"if-none-match": ETAG}, (412, None)),
        # §14.2 Range: GET only; If-Range decides between 206 and 200.
        (b"GET", {b"range": b"bytes=0-9"}, (206, (0, 10))),
        (b"HEAD", {b"range": b"bytes=0-9"}, (200, None)),
        (b"GET", {b"range": b"bytes=0-9", b"if-range": ETAG}, (206, (0, 10))),
        (b"GET", {b"range": b"bytes=0-9", b"if-range": b'"old"'}, (200, None)),
        (b"GET", {b"range": b"bytes=0-9", b"if-range": b'W/"5f-10"'}, (200, None)),
        (b"GET", {b"range": b"bytes=0-9", b"if-range": DATE}, (206, (0, 10))),
        (b"GET", {b"range": b"bytes=0-9", b"if-range": EARLIER}, (200, None)),
        (b"GET", {b"range": b"bytes=100-"}, (416, None)),
        (b"GET", {b"range": b"bytes=0-1,5-6"}, (200, None)),
        (b"GET", {b"if-none-match": ETAG, b"range": b"bytes=0-9"}, (304, None)),
    ],
)
def test_evaluate(method: bytes, fields: dict[bytes, bytes], expected: tuple) -> None:
    assert evaluate(method, fields, ETAG, MTIME, SIZE) == expected


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        (b"bytes=0-0", (0, 1)),
        (b"bytes=10-", (10, 90)),
        (b"bytes=90-500", (90, 10)),  # §14.1.2: a last-pos past the end is clamped
        (b"bytes=-10", (90, 10)),
        (b"bytes=-500", (0, 100)),
        (b"bytes=-0", UNSATISFIABLE),
        (b"bytes=100-200", UNSATISFIABLE),
        (b"bytes=9-3", None),  # §14.1.1: invalid, ignored
        (b"items=0-5", None),
        (b"bytes=a-5", None),
        (b"bytes=" + b"9" * 40 + b"-", UNSATISFIABLE),
    ],
)
def test_byte_range(field: bytes, expected) -> None:
    assert byte_range(field, SIZE) == expected


@given(st.integers(0, 300), st.integers(0, 300), st.integers(0, 300))
def test_a_satisfiable_range_lies_inside_the_file(first: int, last: int, size: int) -> None:
    span = byte_range(b"bytes=%d-%d" % (first, last), size)
    if span is not None and span is not UNSATISFIABLE:
        offset, length = span
        assert offset >= 0 and length >= 1 and offset + length <= size


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        (b"gzip, deflate, br", (True, True)),
        (b"gzip;q=0, br;q=0.5", (True, False)),
        (b"x-gzip", (False, True)),
        (b"*", (True, True)),
        (b"*;q=0, gzip", (False, True)),
        (b"identity", (False, False)),
        (b"br;q=oops", (False, False)),
    ],
)
def test_accepted_codings(field: bytes, expected: tuple[bool, bool]) -> None:
    assert accepted_codings(field) == expected


def test_http_date_reads_all_three_forms() -> None:
    assert http_date(DATE) == MTIME
    assert http_date(b"Sunday, 06-Nov-94 08:49:37 GMT") == MTIME
    assert http_date(b"Sun Nov  6 08:49:37 1994") == MTIME
    assert http_date(b"yesterday") is None


def test_content_type_is_the_same_on_every_host() -> None:
    assert content_type("a/b.JS") == b"text/javascript; charset=utf-8"
    assert content_type("x.svg") == b"image/svg+xml; charset=utf-8"
    assert content_type("x.bin.unknown") == b"application/octet-stream"
