"""Handlers on other hosts: each treadle handler in its own network namespace.

Integration tier, against the real Mongrel2 (see mongrel2_server.py). The test makes two
namespaces, each joined to this one by a veth pair on its own /30; Mongrel2 binds its handler
sockets on this side's addresses, and each handler sees only its namespace's own address and
loopback. Needs root and iproute2 (`ip netns`); skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Running, treadle_command
from tests.integration.mongrel2_server import HANDLING, M2SH, MONGREL2, Mongrel2, wait_until

IP = shutil.which("ip")
pytestmark = [
    pytest.mark.skipif(
        M2SH is None or MONGREL2 is None,
        reason="Mongrel2 is not installed (apt-get install mongrel2-core)",
    ),
    pytest.mark.skipif(IP is None or os.geteuid() != 0, reason="needs root and iproute2"),
    pytest.mark.timeout(120),
]
pytest.importorskip("zmq", reason="pyzmq is not installed (pip install 'treadle[mongrel2]')")


def ip(*args: str) -> None:
    subprocess.run([IP, *args], check=True, capture_output=True, timeout=20)  # type: ignore[list-item]


@pytest.fixture
def namespaces() -> Iterator[list[tuple[str, str, str]]]:
    """Two (namespace, its address, this side's address) joined to this namespace."""
    made: list[tuple[str, str, str]] = []
    tag = os.getpid() % 10000
    try:
        for n in range(2):
            name, outside = f"m2t{tag}-{n}", f"m2o{tag}{n}"
            host, inner = f"10.214.{n}.1", f"10.214.{n}.2"
            try:
                ip("netns", "add", name)
            except subprocess.CalledProcessError as error:
                pytest.skip(f"cannot make a network namespace: {error.stderr.decode().strip()}")
            made.append((name, inner, host))
            ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", name)
            ip("addr", "add", f"{host}/30", "dev", outside)
            ip("link", "set", outside, "up")
            ip("-n", name, "addr", "add", f"{inner}/30", "dev", "eth0")
            ip("-n", name, "link", "set", "eth0", "up")
            ip("-n", name, "link", "set", "lo", "up")
        yield made
    finally:
        for name, _, _ in made:
            subprocess.run([IP, "netns", "del", name], capture_output=True, timeout=20)  # type: ignore[list-item]


def test_handlers_in_their_own_namespaces(namespaces: list[tuple[str, str, str]]) -> None:
    # Mongrel2 binds its handler sockets on every address ("*"), as one would for remote
    # handlers; each handler reaches it through its own veth pair.
    with tempfile.TemporaryDirectory(prefix="m2netns-") as tmp:
        mongrel2 = Mongrel2(Path(tmp), zmq_host="*")
        handlers: list[Running] = []
        try:
            for name, _inner, host in namespaces:
                send = mongrel2.send_spec.replace("*", host)
                recv = mongrel2.recv_spec.replace("*", host)
                command = treadle_command(
                    "mongrel2", "tests.apps.echo:app", send, recv, "--access-log", "-"
                )
                handler = Running([IP, "netns", "exec", name, *command])  # type: ignore[list-item]
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
