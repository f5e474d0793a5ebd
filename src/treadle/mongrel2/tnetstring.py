"""Typed netstrings (tnetstrings.info), the encoding Mongrel2 uses for request headers.

Pure layer: bytes in, values out, no I/O. Strings stay bytes (header values are not
promised to be text). Only the types Mongrel2 sends are needed, but the whole format is
small enough to read: string ``,``, integer ``#``, float ``^``, boolean ``!``, null ``~``,
dict ``}``, list ``]``. A PyPI package exists (``tnetstring``, unmaintained since 2012 and
Python 2 only), so this is written here in a few lines instead.
"""

from __future__ import annotations

import re
from typing import Any

# The spec caps the length prefix at nine digits (< 1 GB): a longer prefix is an attack.
MAX_LENGTH_DIGITS = 9
_INTEGER = re.compile(rb"-?[0-9]+")


class TNetstringError(ValueError):
    """The bytes are not a well-formed tnetstring."""


def parse(data: bytes) -> tuple[Any, bytes]:
    """The first value in ``data`` and the bytes after it."""
    colon = data.find(b":", 0, MAX_LENGTH_DIGITS + 1)
    if colon <= 0:
        raise TNetstringError("a tnetstring starts with its length and ':'")
    digits = data[:colon]
    if not digits.isdigit() or (len(digits) > 1 and digits[:1] == b"0"):
        raise TNetstringError(f"bad tnetstring length {digits[:12]!r}")
    end = colon + 1 + int(digits)
    if end >= len(data):
        raise TNetstringError("tnetstring shorter than its length says")
    payload = data[colon + 1 : end]
    tag = data[end : end + 1]
    rest = data[end + 1 :]
    if tag == b",":
        return payload, rest
    if tag == b"}":
        result: dict[Any, Any] = {}
        while payload:
            key, payload = parse(payload)
            if not payload:
                raise TNetstringError("a dict key without a value")
            value, payload = parse(payload)
            if type(key) is not bytes:
                raise TNetstringError("a dict key must be a string")
            result[key] = value
        return result, rest
    if tag == b"]":
        items = []
        while payload:
            item, payload = parse(payload)
            items.append(item)
        return items, rest
    if tag == b"#":
        if _INTEGER.fullmatch(payload) is None:
            raise TNetstringError(f"bad integer {payload[:20]!r}")
        return int(payload), rest
    if tag == b"^":
        try:
            return float(payload), rest
        except ValueError:
            raise TNetstringError(f"bad float {payload[:20]!r}") from None
    if tag == b"!":
        if payload not in (b"true", b"false"):
            raise TNetstringError(f"bad boolean {payload[:20]!r}")
        return payload == b"true", rest
    if tag == b"~":
        if payload:
            raise TNetstringError("null must be empty")
        return None, rest
    raise TNetstringError(f"unknown tnetstring type {tag!r}")


def loads(data: bytes) -> Any:
    """The one value ``data`` holds; trailing bytes are an error."""
    value, rest = parse(data)
    if rest:
        raise TNetstringError("bytes after the tnetstring")
    return value


def dumps(value: Any) -> bytes:
    """Encode ``value`` (bytes, str as UTF-8, int, float, bool, None, dict, list, tuple)."""
    if value is None:
        return b"0:~"
    kind = type(value)
    if kind is bool:
        payload, tag = (b"true" if value else b"false"), b"!"
    elif kind is bytes:
        payload, tag = value, b","
    elif kind is str:
        payload, tag = value.encode("utf-8"), b","
    elif kind is int:
        payload, tag = str(value).encode("ascii"), b"#"
    elif kind is float:
        payload, tag = repr(value).encode("ascii"), b"^"
    elif kind is dict:
        payload = b"".join(dumps(k) + dumps(v) for k, v in value.items())
        tag = b"}"
    elif kind is list or kind is tuple:
        payload, tag = b"".join(dumps(item) for item in value), b"]"
    else:
        raise TypeError(f"cannot encode {kind.__name__} as a tnetstring")
    return b"%d:%s%s" % (len(payload), payload, tag)
