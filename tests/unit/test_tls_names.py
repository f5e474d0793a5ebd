"""tls_names.py: which certificate a server name (SNI) gets: exact names, then wildcards."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from treadle.tls_names import NameMap, is_wildcard, normalize

A, B, WILD, OTHER = "a", "b", "wild", "other"

labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
host_names = st.lists(labels, min_size=2, max_size=5).map(".".join)


def names() -> NameMap[str]:
    return NameMap(
        [
            (["a.example.com", "www.a.example.com"], A),
            (["B.Example.Com."], B),
            (["*.wild.example.com"], WILD),
            (["x.wild.example.com"], OTHER),  # an exact name beats the wildcard
        ]
    )


@pytest.mark.parametrize(
    ("server_name", "chosen"),
    [
        ("a.example.com", A),
        ("A.EXAMPLE.COM", A),  # RFC 4343: case does not count
        ("a.example.com.", A),  # nor a trailing dot
        ("www.a.example.com", A),
        ("b.example.com", B),
        ("y.wild.example.com", WILD),
        ("x.wild.example.com", OTHER),
        ("wild.example.com", None),  # the wildcard's parent is not covered
        ("y.z.wild.example.com", None),  # nor two labels down (RFC 6125 §6.4.3)
        ("example.com", None),
        ("", None),
        ("localhost", None),
    ],
)
def test_lookup(server_name: str, chosen: str | None) -> None:
    assert names().lookup(server_name) == chosen


def test_the_first_claim_of_a_name_wins_and_a_second_is_reported() -> None:
    table: NameMap[str] = NameMap()
    assert table.add("a.example.com", A)
    assert table.add("a.example.com", A)  # the same value again is no conflict
    assert not table.add("A.example.com", B)
    assert table.add("*.example.com", B)
    assert not table.add("*.EXAMPLE.com", A)
    assert table.lookup("c.example.com") == B
    assert table.lookup("a.example.com") == A
    assert table.owner("a.example.com") == A


@pytest.mark.parametrize(
    ("name", "wildcard"),
    [
        ("*.example.com", True),
        ("*.com", False),  # a wildcard for a whole top-level domain is not honoured
        ("w*.example.com", False),
        ("*.*.example.com", False),
        ("example.com", False),
    ],
)
def test_is_wildcard(name: str, wildcard: bool) -> None:
    assert is_wildcard(name) is wildcard


def test_names_no_client_can_ask_for_claim_nothing() -> None:
    table: NameMap[str] = NameMap([(["w*.example.com", "*.com", ""], A)])
    assert table.names() == []


@given(host_names)
def test_an_exact_name_is_found_in_any_case(name: str) -> None:
    table: NameMap[str] = NameMap([([name], A)])
    assert table.lookup(name.upper()) == A
    assert table.lookup(name + ".") == A
    assert normalize(name.upper()) == name


@given(labels, host_names)
def test_a_wildcard_covers_exactly_one_label_more(label: str, parent: str) -> None:
    table: NameMap[str] = NameMap([(["*." + parent], WILD)])
    assert table.lookup(f"{label}.{parent}") == WILD
    assert table.lookup(parent) is None
    assert table.lookup(f"{label}.{label}.{parent}") is None
