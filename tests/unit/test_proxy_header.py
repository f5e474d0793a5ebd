"""The PROXY protocol header parser (proxy_header.py): v1 and v2, whole and in pieces.

Pure tier. Headers are built by hand from the spec's layouts (and by HAProxy itself in
tests/integration/test_haproxy.py); hypothesis checks that any prefix of a header asks for
more bytes, that any header round-trips, and that no input raises.
"""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from treadle.proxy_header import (
    V2_SIGNATURE,
    Invalid,
    ProxyHeader,
    format_v1,
    format_v2,
    parse,
)

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def test_v1_tcp4() -> None:
    line = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"
    data = line + REQUEST
    header = parse(data)
    assert header == ProxyHeader(len(line), 1, ("192.0.2.1", 56324), ("198.51.100.2", 443))
    assert data[header.length :] == REQUEST


def test_v1_tcp6() -> None:
    header = parse(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n")
    assert isinstance(header, ProxyHeader)
    assert header.source == ("2001:db8::1", 1)


def test_v1_unknown_keeps_the_connections_addresses() -> None:
    assert parse(b"PROXY UNKNOWN\r\n") == ProxyHeader(15, 1)
    assert parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nGET") == ProxyHeader(35, 1)


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 1.2.3.4 5.6.7.8 abc 80\r\n",  # Twisted's parser raised ValueError here
        b"PROXY TCP4 hello world 1 80\r\n",  # and took these as addresses
        b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 80\r\n",
        b"PROXY TCP4 2001:db8::1 5.6.7.8 1 80\r\n",
        b"PROXY TCP6 1.2.3.4 2001:db8::1 1 80\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        b"PROXY TCP4 1.2.3.4  5.6.7.8 1 80\r\n",
        b"PROXY UDP4 1.2.3.4 5.6.7.8 1 80\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 80\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"proxy TCP4 1.2.3.4 5.6.7.8 1 80\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 80 " + b"x" * 100 + b"\r\n",
    ],
)
def test_v1_refusals(line: bytes) -> None:
    assert isinstance(parse(line), Invalid)


def test_v1_longer_than_107_bytes_without_crlf_is_refused() -> None:
    assert parse(b"PROXY TCP4 " + b"1" * 95) is None
    assert isinstance(parse(b"PROXY TCP4 " + b"1" * 96), Invalid)


def test_v2_tcp4_with_tlvs_skipped() -> None:
    tlv = bytes([0x20, 0x00, 0x05, 0x01, 0, 0, 0, 0])  # PP2_TYPE_SSL: client used TLS
    data = format_v2(("192.0.2.1", 56324), ("198.51.100.2", 443), tlvs=tlv) + REQUEST
    header = parse(data)
    assert isinstance(header, ProxyHeader)
    assert (header.version, header.source) == (2, ("192.0.2.1", 56324))
    assert data[header.length :] == REQUEST


def test_v2_tcp6() -> None:
    header = parse(format_v2(("2001:db8::1", 1), ("2001:db8::2", 2)))
    assert isinstance(header, ProxyHeader) and header.source == ("2001:db8::1", 1)


def test_v2_local_is_the_proxys_own_connection() -> None:
    assert parse(format_v2(None, None) + REQUEST) == ProxyHeader(16, 2)


def test_v2_unix_family_keeps_the_connections_addresses() -> None:
    body = b"/a".ljust(108, b"\0") + b"/b".ljust(108, b"\0")
    data = V2_SIGNATURE + bytes([0x21, 0x31]) + struct.pack("!H", len(body)) + body
    assert parse(data) == ProxyHeader(16 + 216, 2)


@pytest.mark.parametrize(
    ("ver_cmd", "family", "body"),
    [
        (0x11, 0x11, bytes(12)),  # version 1 in a v2 signature
        (0x22, 0x11, bytes(12)),  # command 2
        (0x21, 0x12, bytes(12)),  # DGRAM
        (0x21, 0x41, bytes(12)),  # family 4
        (0x21, 0x11, bytes(8)),  # too short for two IPv4 addresses and ports
        (0x21, 0x21, bytes(12)),  # too short for IPv6
    ],
)
def test_v2_refusals(ver_cmd: int, family: int, body: bytes) -> None:
    data = V2_SIGNATURE + bytes([ver_cmd, family]) + struct.pack("!H", len(body)) + body
    assert isinstance(parse(data), Invalid)


def test_a_bad_signature_is_refused_as_soon_as_it_differs() -> None:
    assert isinstance(parse(b"\r\n\r\nX"), Invalid)
    assert isinstance(parse(b"PROXX"), Invalid)
    assert isinstance(parse(b"\x16\x03\x01"), Invalid)  # a TLS ClientHello without a header


addresses = st.one_of(
    st.tuples(st.ip_addresses(v=4), st.ip_addresses(v=4)),
    st.tuples(st.ip_addresses(v=6), st.ip_addresses(v=6)),
)
ports = st.integers(0, 65535)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(addresses, ports, ports, st.booleans(), st.binary(max_size=40))
def test_any_header_round_trips_and_every_prefix_waits(pair, sport, dport, v2, after) -> None:
    source = (str(pair[0]), sport)
    destination = (str(pair[1]), dport)
    header = format_v2(source, destination) if v2 else format_v1(source, destination)
    for cut in range(len(header)):
        assert parse(header[:cut]) is None
    parsed = parse(header + after)
    assert isinstance(parsed, ProxyHeader)
    assert parsed.length == len(header)
    assert parsed.source == source and parsed.destination == destination
    assert ipaddress.ip_address(parsed.source[0]) == pair[0]


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_no_input_raises(data: bytes) -> None:
    result = parse(data)
    assert result is None or isinstance(result, Invalid | ProxyHeader)
    if isinstance(result, ProxyHeader):
        assert 0 < result.length <= len(data)
