"""tls.py's ALPN choice and listen.py's reading of ssl: endpoint strings (no sockets)."""

from __future__ import annotations

import pytest

from treadle import listen
from treadle.tls import ALPN_PROTOCOLS, choose_protocol


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        ([b"h2", b"http/1.1"], b"h2"),
        ([b"http/1.1", b"h2"], b"h2"),
        ([b"http/1.1"], b"http/1.1"),
        ([b"h2"], b"h2"),
        ([b"spdy/3", b"acme-tls/1"], None),
        ([], None),
    ],
)
def test_choose_protocol_takes_the_servers_first_choice_or_none(offered, chosen) -> None:
    assert choose_protocol(offered) == chosen


def test_the_server_prefers_in_its_own_order() -> None:
    # RFC 7301 §3.2: the server picks; h2 first wins over http/1.1 in any client order.
    assert choose_protocol([b"http/1.1", b"h2"], (b"http/1.1", b"h2")) == b"http/1.1"
    assert ALPN_PROTOCOLS == (b"h2", b"http/1.1")


def test_split_description_reads_twisted_endpoint_strings() -> None:
    kind, args, params = listen.split_description(
        r"ssl:8443:interface=\:\:1:privateKey=/etc/k\:ey.pem:certKey=c.pem"
    )
    assert (kind, args) == ("ssl", ["8443"])
    assert params == {"interface": "::1", "privateKey": "/etc/k:ey.pem", "certKey": "c.pem"}
    assert listen.split_description("ssl:port=443:a=b=c") == (
        "ssl",
        [],
        {"port": "443", "a": "b=c"},
    )


@pytest.mark.parametrize(
    ("bind", "scheme"),
    [
        ("ssl:8443:privateKey=k.pem", "https"),
        ("tcp:8000", "http"),
        ("127.0.0.1:8000", "http"),
        ("8000", "http"),
        ("unix:/run/app.sock", "http"),
        ("fd:3:family=INET", "http"),
    ],
)
def test_scheme_of_a_bind(bind: str, scheme: str) -> None:
    assert listen.scheme(bind) == scheme


def test_ssl_binds_get_the_backlog_setting() -> None:
    assert listen.with_backlog("ssl:0:privateKey=k", 2048) == "ssl:0:privateKey=k:backlog=2048"
    assert listen.with_backlog("ssl:0:backlog=7", 2048) == "ssl:0:backlog=7"
