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
    value, end = parse_at(data, 0, len(data))
    return value, data[end:]


def parse_at(data: bytes, start: int, limit: int) -> tuple[Any, int]:
    """The value that starts at ``data[start]`` and ends by ``limit``, and where it ends.

    Offsets, not slices: a header dict is parsed without copying what follows each item.
    """
    colon = data.find(b":", start, min(start + MAX_LENGTH_DIGITS + 1, limit))
    if colon <= start:
        raise TNetstringError("a tnetstring starts with its length and ':'")
    digits = data[start:colon]
    if not digits.isdigit() or (len(digits) > 1 and digits[:1] == b"0"):
        raise TNetstringError(f"bad tnetstring length {digits[:12]!r}")
    begin = colon + 1
    end = begin + int(digits)
    if end >= limit:
        raise TNetstringError("tnetstring shorter than its length says")
    tag = data[end]
    if tag == 44:  # ","
        return data[begin:end], end + 1
    if tag == 125:  # "}"
        result: dict[Any, Any] = {}
        position = begin
        while position < end:
            key, position = parse_at(data, position, end)
            if position >= end:
                raise TNetstringError("a dict key without a value")
            value, position = parse_at(data, position, end)
            if type(key) is not bytes:
                raise TNetstringError("a dict key must be a string")
            result[key] = value
        return result, end + 1
    if tag == 93:  # "]"
        items = []
        position = begin
        while position < end:
            item, position = parse_at(data, position, end)
            items.append(item)
        return items, end + 1
    payload = data[begin:end]
    if tag == 35:  # "#"
        if _INTEGER.fullmatch(payload) is None:
            raise TNetstringError(f"bad integer {payload[:20]!r}")
        return int(payload), end + 1
    if tag == 94:  # "^"
        try:
            return float(payload), end + 1
        except ValueError:
            raise TNetstringError(f"bad float {payload[:20]!r}") from None
    if tag == 33:  # "!"
        if payload not in (b"true", b"false"):
            raise TNetstringError(f"bad boolean {payload[:20]!r}")
        return payload == b"true", end + 1
    if tag == 126:  # "~"
        if payload:
            raise TNetstringError("null must be empty")
        return None, end + 1
    raise TNetstringError(f"unknown tnetstring type {bytes([tag])!r}")


def loads(data: bytes) -> Any:
    """The one value ``data`` holds; trailing bytes are an error."""
    value, end = parse_at(data, 0, len(data))
    if end != len(data):
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
