"""RFC 9110 rules for answering a request for a stored representation, on values only.

Pure layer: no I/O, no Twisted, no clock. Given the request's fields and a file's
validators (entity-tag, modification time, size), it decides the answer: 412, 304,
206 with a span, 416, or 200 (preconditions §13.2.2, Range §14, HTTP-dates §5.6.7),
which precompressed coding the client accepts (§12.5.3), and a name's media type.
static.py turns those decisions into responses and files.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Mapping
from email.utils import mktime_tz, parsedate_tz

# The stdlib table without /etc/mime.types (same answer on every host), plus RFC 9239 and fonts.
_MIME = mimetypes.MimeTypes()
_MIME_OVERRIDES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".webp": "image/webp",
}
_CHARSET_TYPES = ("text/", "application/javascript", "application/json", "application/xml")

# The request fields these rules read (lower-case names).
FIELDS = frozenset(
    {b"accept-encoding", b"if-match", b"if-none-match", b"if-modified-since"}
    | {b"if-unmodified-since", b"range", b"if-range"}
)

UNSATISFIABLE = (-1, -1)


def content_type(name: str) -> bytes:
    """The Content-Type for a file name; text types say charset=utf-8."""
    ext = os.path.splitext(name)[1].lower()
    ctype = _MIME_OVERRIDES.get(ext) or _MIME.guess_type(name, strict=False)[0]
    if ctype is None:
        return b"application/octet-stream"
    if ctype.startswith(_CHARSET_TYPES) or ctype.endswith(("+xml", "+json")):
        ctype += "; charset=utf-8"
    return ctype.encode("ascii")


def http_date(value: bytes) -> int | None:
    """Seconds since the epoch for an HTTP-date (RFC 9110 §5.6.7, all three forms), or None."""
    try:
        parsed = parsedate_tz(value.decode("latin-1"))
        return None if parsed is None else mktime_tz(parsed)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def etag_listed(field: bytes, etag: bytes, *, weak: bool) -> bool:
    """Does an If-Match / If-None-Match list name ``etag``? (RFC 9110 §8.8.3.2 comparison)."""
    if field.strip() == b"*":
        return True
    for tag in field.split(b","):
        tag = tag.strip()
        if tag.startswith(b"W/"):
            if not weak:
                continue
            tag = tag[2:]
        if tag == etag:
            return True
    return False


def accepted_codings(field: bytes) -> tuple[bool, bool]:
    """(br acceptable, gzip acceptable) per RFC 9110 §12.5.3; "*" covers unlisted codings."""
    weights: dict[bytes, float] = {}
    for item in field.split(b","):
        coding, _, params = item.partition(b";")
        weight = 1.0
        for param in params.split(b";"):
            key, _, value = param.partition(b"=")
            if key.strip().lower() == b"q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = 0.0
        coding = coding.strip().lower()
        weights[b"gzip" if coding == b"x-gzip" else coding] = weight  # §8.4.1.3
    star = weights.get(b"*", 0.0)
    return weights.get(b"br", star) > 0, weights.get(b"gzip", star) > 0


def byte_range(field: bytes, size: int) -> tuple[int, int] | None:
    """(offset, length) for one range, UNSATISFIABLE, or None to ignore the field.

    RFC 9110 §14.1.2 forms "a-b", "a-", "-n"; a last-pos past the end is clamped. Several
    ranges, other units and invalid specs are ignored (§14.2 allows serving 200 instead).
    """
    unit, sep, spec = field.partition(b"=")
    if not sep or unit.strip().lower() != b"bytes" or b"," in spec:
        return None
    first, dash, last = spec.strip().partition(b"-")
    if not dash or (last and not last.isdigit()) or (first and not first.isdigit()):
        return None
    if not first:
        if not last:
            return None
        suffix = _position(last)
        if suffix == 0 or size == 0:
            return UNSATISFIABLE
        suffix = min(suffix, size)
        return size - suffix, suffix
    start = _position(first)
    end = _position(last) if last else size - 1
    if last and end < start:
        return None  # §14.1.1: an invalid range-spec; the field is ignored
    if start >= size:
        return UNSATISFIABLE
    end = min(end, size - 1)
    return start, end - start + 1


def _position(digits: bytes) -> int:
    """An ASCII digit string as int, capped (int() refuses very long digit strings)."""
    digits = digits.lstrip(b"0")
    return int(digits or b"0") if len(digits) <= 18 else 1 << 63


def if_range_holds(field: bytes, etag: bytes, mtime_s: int) -> bool:
    """RFC 9110 §13.1.5: an entity-tag is compared strongly, a date must match exactly."""
    field = field.strip()
    if field.startswith((b'"', b"W/")):
        return field == etag
    return http_date(field) == mtime_s


def evaluate(
    method: bytes, fields: Mapping[bytes, bytes], etag: bytes, mtime_s: int, size: int
) -> tuple[int, tuple[int, int] | None]:
    """The status to answer with, and the span for a 206: (412|304|416|206|200, span).

    RFC 9110 §13.2.2: If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since,
    then If-Range and Range, in that order; each later one only when the earlier is absent.
    ``fields`` holds the request's FIELDS by lower-case name, repeated ones joined by ",".
    """
    if not fields:
        return 200, None
    if_match = fields.get(b"if-match")
    if if_match is not None:
        if not etag_listed(if_match, etag, weak=False):
            return 412, None
    elif b"if-unmodified-since" in fields:
        date = http_date(fields[b"if-unmodified-since"])
        if date is not None and mtime_s > date:
            return 412, None
    if_none_match = fields.get(b"if-none-match")
    if if_none_match is not None:
        if etag_listed(if_none_match, etag, weak=True):
            return 304, None
    elif b"if-modified-since" in fields:
        date = http_date(fields[b"if-modified-since"])
        if date is not None and mtime_s <= date:
            return 304, None
    range_field = fields.get(b"range")
    if range_field is not None and method == b"GET":  # §14.2: GET only
        if_range = fields.get(b"if-range")
        if if_range is None or if_range_holds(if_range, etag, mtime_s):
            span = byte_range(range_field, size)
            if span is UNSATISFIABLE:
                return 416, None
            if span is not None:
                return 206, span
    return 200, None
