"""Handlers on other hosts: each treadle handler in its own network namespace.

Integration tier, against the real Mongrel2 (see mongrel2_server.py). The test makes two
namespaces, each joined to this one by a veth pair on its own /30; Mongrel2 binds its handler
sockets on this side's addresses, and each handler sees only its namespace's own address and
loopback. Needs root and iproute2 (`ip netns`); skipped otherwise.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Running, treadle_command
from tests.integration.mongrel2_server import HANDLING, M2SH, MONGREL2, Mongrel2, wait_until
from tests.integration.netns import IP, Joined, joined_pair

pytestmark = [
    pytest.mark.skipif(
        M2SH is None or MONGREL2 is None,
        reason="Mongrel2 is not installed (apt-get install mongrel2-core)",
    ),
    pytest.mark.skipif(IP is None or os.geteuid() != 0, reason="needs root and iproute2"),
    pytest.mark.timeout(120),
]
pytest.importorskip("zmq", reason="pyzmq is not installed (pip install 'treadle[mongrel2]')")


@pytest.fixture
def namespaces() -> Iterator[list[Joined]]:
    """Two namespaces joined to this one, each on its own /30."""
    pair = joined_pair("m2t", 214)
    try:
        for joined in pair:
            try:
                joined.create()
            except OSError as error:
                pytest.skip(f"cannot make a network namespace: {error}")
        yield pair
    finally:
        for joined in pair:
            joined.destroy()


def test_handlers_in_their_own_namespaces(namespaces: list[Joined]) -> None:
    assert IP is not None
    # Mongrel2 binds its handler sockets on every address ("*"), as one would for remote
    # handlers; each handler reaches it through its own veth pair.
    with tempfile.TemporaryDirectory(prefix="m2netns-") as tmp:
        mongrel2 = Mongrel2(Path(tmp), zmq_host="*")
        handlers: list[Running] = []
        try:
            for joined in namespaces:
                send = mongrel2.send_spec.replace("*", joined.gateway)
                recv = mongrel2.recv_spec.replace("*", joined.gateway)
                command = treadle_command(
                    "mongrel2", "tests.apps.echo:app", send, recv, "--access-log", "-"
                )
                handler = Running([IP, "netns", "exec", joined.netns, *command])
                handlers.append(handler)
                handler.wait_for_line(HANDLING, timeout=30)
            # One kept-alive connection: Mongrel2's round-robin alternates between them.
            conn = mongrel2.connection()
            try:
                for n in range(6):
                    conn.request("GET", f"/app/r{n}")
                    response = conn.getresponse()
                    assert response.status == 200
                    assert b'"SCRIPT_NAME": "/app"' in response.read()
            finally:
                conn.close()
            wait_until(
                lambda: sum(h.output.count("GET /app/r") for h in handlers) == 6, 10, "6 logged"
            )
            served = [h.output.count("GET /app/r") for h in handlers]
            assert sum(served) == 6 and min(served) >= 1, served
        finally:
            for handler in handlers:
                handler.kill()
            mongrel2.stop()
