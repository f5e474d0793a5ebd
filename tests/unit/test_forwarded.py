"""Proxy headers (http/forwarded.py): who the client is, as trusted proxies tell it.

Pure tier: header values and peers in, (peer, scheme) out. Hypothesis checks the two
properties that matter to a user: a client cannot choose its REMOTE_ADDR by writing the
headers itself, and no header value, however broken, raises.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from treadle.config import Config, settings_from_env
from treadle.errors import ConfigError
from treadle.http.forwarded import (
    FORWARDED,
    ProxyHeaders,
    from_forwarded,
    from_settings,
    from_x_forwarded,
    parse_allow_ips,
    parse_forwarded,
    parse_node,
)

LOCAL = parse_allow_ips("127.0.0.1,::1")
assert LOCAL is not None
PROXY = ("127.0.0.1", 40000)


def x_forwarded(
    headers: list[tuple[bytes, bytes]], peer=PROXY, scheme="http", allow="127.0.0.1,::1"
):
    proxy_headers = from_settings(allow)
    assert proxy_headers is not None
    return proxy_headers.resolve(headers, peer, scheme)


# -- the setting -----------------------------------------------------------------------


def test_allow_ips_takes_addresses_networks_and_star() -> None:
    trusted = parse_allow_ips(" 10.0.0.0/8 , 192.0.2.7, 2001:db8::/32 ")
    assert trusted is not None
    assert trusted.trusts("10.200.3.4") and trusted.trusts("192.0.2.7")
    assert trusted.trusts("2001:db8::99")
    assert not trusted.trusts("192.0.2.8") and not trusted.trusts("11.0.0.1")
    star = parse_allow_ips("*")
    assert star is not None and star.trusts("203.0.113.1")


def test_empty_allow_ips_turns_the_feature_off() -> None:
    assert parse_allow_ips("") is None
    assert from_settings(" , ") is None


@pytest.mark.parametrize("bad", ["example.com", "10.0.0.0/33", "1.2.3", "localhost"])
def test_a_bad_entry_fails_at_start_naming_it(bad: str) -> None:
    with pytest.raises(ConfigError, match="--forwarded-allow-ips"):
        Config.from_settings({"forwarded_allow_ips": f"127.0.0.1,{bad}"}).replace()
    with pytest.raises(ConfigError, match=bad.replace(".", r"\.")):
        parse_allow_ips(bad)


def test_gunicorns_environment_variable_is_read_and_treadles_wins() -> None:
    assert settings_from_env({"FORWARDED_ALLOW_IPS": "10.0.0.1"}) == {
        "forwarded_allow_ips": "10.0.0.1"
    }
    both = {"FORWARDED_ALLOW_IPS": "10.0.0.1", "TREADLE_FORWARDED_ALLOW_IPS": "*"}
    assert settings_from_env(both) == {"forwarded_allow_ips": "*"}
    with pytest.raises(ConfigError, match="^FORWARDED_ALLOW_IPS: "):
        settings_from_env({"FORWARDED_ALLOW_IPS": "proxy.example"})


def test_the_default_trusts_loopback_as_gunicorn_does() -> None:
    assert Config().proxy.forwarded_allow_ips == "127.0.0.1,::1"


# -- X-Forwarded-For / X-Forwarded-Proto --------------------------------------------


def test_a_trusted_proxy_sets_the_client_and_scheme() -> None:
    peer, scheme = x_forwarded(
        [(b"X-Forwarded-For", b"203.0.113.9"), (b"X-Forwarded-Proto", b"https")]
    )
    assert peer == ("203.0.113.9", 0)
    assert scheme == "https"


def test_an_untrusted_peer_changes_nothing() -> None:
    headers = [(b"X-Forwarded-For", b"203.0.113.9"), (b"X-Forwarded-Proto", b"https")]
    assert x_forwarded(headers, peer=("198.51.100.2", 5555)) == (("198.51.100.2", 5555), "http")


def test_the_right_most_untrusted_address_is_the_client() -> None:
    # The client wrote "1.1.1.1"; the first proxy appended the real client, the next the
    # first proxy (10.0.0.5, trusted); the last proxy is the peer.
    headers = [(b"x-forwarded-for", b"1.1.1.1, 203.0.113.9, 10.0.0.5")]
    peer, _ = x_forwarded(headers, allow="127.0.0.1,10.0.0.0/8")
    assert peer == ("203.0.113.9", 0)


def test_when_every_hop_is_trusted_the_left_most_is_the_client() -> None:
    peer, _ = x_forwarded(
        [(b"X-Forwarded-For", b"10.0.0.9, 10.0.0.5")], allow="127.0.0.1,10.0.0.0/8"
    )
    assert peer == ("10.0.0.9", 0)


def test_star_trusts_every_hop() -> None:
    peer, _ = x_forwarded([(b"X-Forwarded-For", b"1.1.1.1, 203.0.113.9")], allow="*")
    assert peer == ("1.1.1.1", 0)


def test_repeated_header_lines_are_one_list() -> None:
    headers = [(b"X-Forwarded-For", b"1.1.1.1"), (b"X-Forwarded-For", b"203.0.113.9")]
    assert x_forwarded(headers)[0] == ("203.0.113.9", 0)


@pytest.mark.parametrize(
    ("entry", "node"),
    [
        ("203.0.113.9:4711", ("203.0.113.9", 4711)),
        ("2001:DB8::1", ("2001:db8::1", 0)),
        ("[2001:db8::1]:4711", ("2001:db8::1", 4711)),
        ("::ffff:192.0.2.1", ("192.0.2.1", 0)),
    ],
)
def test_addresses_with_ports_and_ipv6(entry: str, node: tuple[str, int]) -> None:
    assert x_forwarded([(b"X-Forwarded-For", entry.encode())])[0] == node


@pytest.mark.parametrize("entry", ["unknown", "_hidden", "not an address", "1.2.3.4:99999", ""])
def test_a_client_that_is_not_an_address_leaves_the_nearest_known_hop(entry: str) -> None:
    # REMOTE_ADDR must stay an IP address (apps store it in IP columns): the trusted hop
    # that named the unknown client stands in.
    headers = [(b"X-Forwarded-For", f"{entry}, 10.0.0.5".encode())]
    peer, _ = x_forwarded(headers, allow="127.0.0.1,10.0.0.0/8")
    assert peer == ("10.0.0.5", 0)
    assert x_forwarded([(b"X-Forwarded-For", b"unknown")])[0] == PROXY


@pytest.mark.parametrize(
    ("proto", "scheme"),
    [
        ("https", "https"),
        ("HTTPS", "https"),
        ("http", "http"),
        ("wss", "https"),
        ("gopher", "http"),
    ],
)
def test_forwarded_proto_values(proto: str, scheme: str) -> None:
    assert x_forwarded([(b"X-Forwarded-Proto", proto.encode())])[1] == scheme


def test_proto_http_from_the_proxy_turns_an_https_connection_into_http() -> None:
    assert x_forwarded([(b"X-Forwarded-Proto", b"http")], scheme="https")[1] == "http"


def test_a_proto_list_is_read_at_the_clients_hop() -> None:
    # Two proxies that both append: the client came over https to the first one.
    headers = [
        (b"X-Forwarded-For", b"203.0.113.9, 10.0.0.5"),
        (b"X-Forwarded-Proto", b"https, http"),
    ]
    assert x_forwarded(headers, allow="127.0.0.1,10.0.0.0/8") == (("203.0.113.9", 0), "https")


def test_a_unix_socket_peer_is_trusted() -> None:
    assert x_forwarded([(b"X-Forwarded-For", b"203.0.113.9")], peer=None)[0] == ("203.0.113.9", 0)


def test_a_dual_stack_peer_matches_its_ipv4_entry() -> None:
    headers = [(b"X-Forwarded-For", b"203.0.113.9")]
    assert x_forwarded(headers, peer=("::ffff:127.0.0.1", 1))[0] == ("203.0.113.9", 0)


def test_x_forwarded_mode_ignores_forwarded() -> None:
    headers = [(b"Forwarded", b"for=203.0.113.9;proto=https")]
    assert x_forwarded(headers) == (PROXY, "http")


# -- RFC 7239 Forwarded ----------------------------------------------------------------


def forwarded(value: str, peer=PROXY, scheme="http", allow="127.0.0.1,::1"):
    trusted = parse_allow_ips(allow)
    assert trusted is not None
    return ProxyHeaders(trusted, FORWARDED).resolve([(b"Forwarded", value.encode())], peer, scheme)


def test_rfc7239_examples_parse() -> None:
    # RFC 7239 §4 and §7.1
    assert parse_forwarded('for="_gazonk"') == [{"for": "_gazonk"}]
    assert parse_forwarded('For="[2001:db8:cafe::17]:4711"') == [
        {"for": "[2001:db8:cafe::17]:4711"}
    ]
    assert parse_forwarded("for=192.0.2.60;proto=http;by=203.0.113.43") == [
        {"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"}
    ]
    assert parse_forwarded("for=192.0.2.43, for=198.51.100.17") == [
        {"for": "192.0.2.43"},
        {"for": "198.51.100.17"},
    ]


def test_forwarded_sets_the_client_port_and_scheme() -> None:
    assert forwarded('for="[2001:db8:cafe::17]:4711";proto=https') == (
        ("2001:db8:cafe::17", 4711),
        "https",
    )


def test_forwarded_right_most_untrusted() -> None:
    value = "for=1.1.1.1;proto=http, for=203.0.113.9;proto=https, for=10.0.0.5"
    assert forwarded(value, allow="127.0.0.1,10.0.0.0/8") == (("203.0.113.9", 0), "https")


def test_an_obfuscated_client_keeps_the_proxy_and_takes_its_proto() -> None:
    assert forwarded("for=_hidden;proto=https") == (PROXY, "https")
    assert forwarded('for="192.0.2.60:_port"') == (("192.0.2.60", 0), "http")


@pytest.mark.parametrize(
    "value",
    [
        "for=192.0.2.60;for=192.0.2.61",  # a parameter twice in one element
        "for=[2001:db8::1]",  # IPv6 must be quoted
        'for="192.0.2.60',  # unterminated quote
        "for 192.0.2.60",
    ],
)
def test_a_malformed_element_is_not_a_client(value: str) -> None:
    assert parse_forwarded(value) == [None]
    assert forwarded(value) == (PROXY, "http")


def test_quoted_semicolons_do_not_split_a_quoted_comma_breaks_its_element() -> None:
    assert parse_forwarded('for="a;b";proto=https') == [{"for": "a;b", "proto": "https"}]
    assert parse_forwarded(r'by="x\"y"') == [{"by": 'x"y'}]
    assert parse_forwarded('ext="a,b", for=192.0.2.1') == [None, None, {"for": "192.0.2.1"}]


def test_an_unterminated_quote_cannot_swallow_the_proxys_element() -> None:
    """Found by hypothesis: a client's ``for="`` used to hide the element its proxy
    appended, so REMOTE_ADDR became the proxy's own (perhaps allow-listed) address."""
    assert forwarded('for=", for="192.0.2.60:1";proto=https') == (("192.0.2.60", 1), "https")
    assert forwarded('for="a, for="[2001:db8::1]:80"') == (("2001:db8::1", 80), "http")


def test_forwarded_mode_ignores_x_forwarded_for() -> None:
    trusted = parse_allow_ips("127.0.0.1")
    assert trusted is not None
    headers = [(b"X-Forwarded-For", b"203.0.113.9")]
    assert ProxyHeaders(trusted, FORWARDED).resolve(headers, PROXY, "http") == (PROXY, "http")


def test_forwarded_from_an_untrusted_peer_changes_nothing() -> None:
    assert forwarded("for=203.0.113.9;proto=https", peer=("198.51.100.2", 1)) == (
        ("198.51.100.2", 1),
        "http",
    )


# -- properties ----------------------------------------------------------------------

ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None).map(str)
trusted_net = ipaddress.ip_network("10.0.0.0/8")
untrusted_ip = st.one_of(ipv4, ipv6).filter(
    lambda a: ipaddress.ip_address(a) not in trusted_net and a not in ("127.0.0.1", "::1")
)
proxy_ip = st.integers(1, 2**24 - 2).map(lambda n: str(trusted_net[n]))
client_text = st.text(
    alphabet=st.characters(codec="latin-1", exclude_characters=",\r\n"), max_size=30
)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    written=st.lists(client_text, max_size=4),
    client=untrusted_ip,
    proxies=st.lists(proxy_ip, max_size=3),
)
def test_a_client_cannot_choose_its_address(written, client, proxies) -> None:
    """Whatever the client writes in X-Forwarded-For, the hop its first proxy appended
    (its real address) is what REMOTE_ADDR becomes."""
    chain = [*written, client, *proxies]
    headers = [(b"X-Forwarded-For", ", ".join(chain).encode("latin-1"))]
    peer, _ = x_forwarded(headers, peer=("10.0.0.1", 1), allow="10.0.0.0/8")
    expected = parse_node(client)
    assert peer == expected


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    written=st.lists(client_text, max_size=4),
    client=untrusted_ip,
    proxies=st.lists(proxy_ip, max_size=3),
    port=st.integers(1, 65535),
)
def test_a_client_cannot_choose_its_address_in_forwarded(written, client, proxies, port) -> None:
    node = f'"[{client}]:{port}"' if ":" in client else f'"{client}:{port}"'
    elements = [f"for={text}" for text in written] + [f"for={node};proto=https"]
    elements += [f"for={proxy}" for proxy in proxies]
    value = ", ".join(elements)
    assert forwarded(value, peer=("10.0.0.1", 1), allow="10.0.0.0/8") == (
        (str(ipaddress.ip_address(client)), port),
        "https",
    )


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(codec="latin-1"), max_size=200))
def test_no_header_value_raises(value: str) -> None:
    raw = value.encode("latin-1")
    for kind in ("x-forwarded", FORWARDED):
        trusted = parse_allow_ips("*")
        assert trusted is not None
        headers = [(b"X-Forwarded-For", raw), (b"X-Forwarded-Proto", raw), (b"Forwarded", raw)]
        peer, scheme = ProxyHeaders(trusted, kind).resolve(headers, PROXY, "http")
        assert scheme in ("http", "https")
        assert peer is not None and ipaddress.ip_address(peer[0]) is not None
        assert 0 <= peer[1] <= 65535


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "for": st.one_of(ipv4, ipv6.map(lambda a: f"[{a}]")),
                "proto": st.sampled_from(["http", "https"]),
            }
        ),
        min_size=1,
        max_size=5,
    )
)
def test_forwarded_round_trip(elements) -> None:
    value = ", ".join(";".join(f'{k}="{v}"' for k, v in element.items()) for element in elements)
    assert parse_forwarded(value) == elements


def test_the_helpers_agree_with_resolve() -> None:
    assert from_x_forwarded("203.0.113.9", "https", PROXY, "http", LOCAL) == (
        ("203.0.113.9", 0),
        "https",
    )
    assert from_forwarded("for=203.0.113.9", PROXY, "http", LOCAL) == (("203.0.113.9", 0), "http")
