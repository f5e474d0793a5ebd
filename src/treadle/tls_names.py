"""Which certificate answers a TLS client's server name (SNI): exact names, then wildcards.

Pure layer: strings in, a chosen value out; no OpenSSL, no files. tls_sni.py builds one
``NameMap`` per set of certificates from the DNS names each certificate carries and asks it
once per handshake. It must not read certificates or know what the values are.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

Value = TypeVar("Value")


def normalize(name: str) -> str:
    """A host name as SNI compares it: lower case, no trailing dot (RFC 6066 §3 sends
    A-labels without the dot; RFC 4343: DNS names compare without regard to case)."""
    return name.strip().rstrip(".").lower()


def is_wildcard(name: str) -> bool:
    """``*.example.com``: a left-most label of exactly ``*`` (RFC 6125 §6.4.3; partial
    wildcards such as ``w*.example.com`` are not honoured by browsers, so not here either)."""
    return name.startswith("*.") and "*" not in name[2:] and name.count(".") >= 2


class NameMap(Generic[Value]):
    """Host name -> value, built from (names, value) pairs; first claim of a name wins."""

    def __init__(self, entries: Iterable[tuple[Iterable[str], Value]] = ()) -> None:
        self.exact: dict[str, Value] = {}
        self.wildcards: dict[str, Value] = {}  # "example.com" for "*.example.com"
        for names, value in entries:
            for name in names:
                self.add(name, value)

    def add(self, name: str, value: Value) -> bool:
        """Claim ``name`` for ``value``; False when another value has it already."""
        name = normalize(name)
        if is_wildcard(name):
            table, key = self.wildcards, name[2:]
        elif "*" in name or not name:
            return True  # a name no client can ask for: nothing to claim
        else:
            table, key = self.exact, name
        if key in table:
            return table[key] is value
        table[key] = value
        return True

    def owner(self, name: str) -> Value | None:
        """The value that claimed exactly this (normalized) name or wildcard, if any."""
        name = normalize(name)
        if is_wildcard(name):
            return self.wildcards.get(name[2:])
        return self.exact.get(name)

    def lookup(self, server_name: str) -> Value | None:
        """The value for a client's server name: an exact name first, else a wildcard that
        covers exactly one label more (``*.example.com`` takes ``a.example.com`` but neither
        ``example.com`` nor ``a.b.example.com``, RFC 6125 §6.4.3), else None."""
        name = normalize(server_name)
        found = self.exact.get(name)
        if found is not None:
            return found
        label, dot, parent = name.partition(".")
        if not dot or not label:
            return None
        return self.wildcards.get(parent)

    def names(self) -> list[str]:
        return sorted(self.exact) + sorted("*." + parent for parent in self.wildcards)
