"""Access-log escaping: what a client sends can never break a line's format."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from treadle.accesslog import ATOMS, AccessLog, escape
from treadle.errors import ConfigError

# Latin-1 text: header values and targets reach the access log decoded one char per byte.
latin1 = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255))


def unescape(text: str) -> str:
    return re.sub(
        r'\\(x[0-9a-f]{2}|"|\\)',
        lambda m: chr(int(m.group(1)[1:], 16)) if m.group(1)[0] == "x" else m.group(1),
        text,
    )


def test_quotes_backslashes_and_control_bytes_are_escaped_as_apache_does() -> None:
    assert escape('curl/8 "evil" \\') == 'curl/8 \\"evil\\" \\\\'
    assert escape("a\nb\r\x00\x7f\xe9") == "a\\x0ab\\x0d\\x00\\x7f\\xe9"
    assert escape("Mozilla/5.0 (X11; Linux x86_64)") == "Mozilla/5.0 (X11; Linux x86_64)"


@given(latin1)
def test_an_escaped_field_is_printable_ascii_without_a_bare_quote(text: str) -> None:
    escaped = escape(text)
    assert escaped.isascii() and escaped.isprintable()
    # A combined-format field can be found again: '"' only ever follows a backslash.
    assert re.fullmatch(r'(?:[^"\\]|\\.)*', escaped)
    assert unescape(escaped) == text


@pytest.mark.parametrize(
    ("fmt", "says"),
    [("%(u)s", "unknown atom %(u)s"), ("%(h)s %", "cannot be used")],
)
def test_a_bad_format_is_refused_at_start_not_on_every_request(fmt: str, says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)):
        AccessLog(fmt)


def test_every_atom_is_accepted_in_a_format() -> None:
    AccessLog(" ".join(f"%({name})s" for name in ATOMS))
