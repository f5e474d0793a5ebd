"""A dead worker's queued connections go to the live worker when the kernel can migrate them.

With ``net.ipv4.tcp_migrate_req=1`` (Linux 5.14+), the supervisor closes a dead worker's
slot sockets and opens fresh ones for its replacement, so the connections waiting there move
to the other workers at once. The sysctl is per network namespace: the test makes one
(``ip netns add``), sets it there and runs treadle and the client inside it, changing
nothing on the host.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, Running, treadle_command

IP = shutil.which("ip") or ("/usr/sbin/ip" if Path("/usr/sbin/ip").exists() else None)
READY = re.compile(r"2 workers ready at http://127\.0\.0\.1:(\d+) .*worker pids (\d+), (\d+)\)")

pytestmark = [
    pytest.mark.skipif(IP is None, reason="ip absent (Debian: apt-get install iproute2)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(
        not Path("/proc/sys/net/ipv4/tcp_migrate_req").exists(),
        reason="the kernel has no net.ipv4.tcp_migrate_req (Linux 5.14+)",
    ),
]

# Runs inside the namespace: open every connection and send its request, say so, then read
# each answer (the worker's pid) or the error.
CLIENT = """
import json, socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
socks = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(count)]
for sock in socks:
    sock.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
print("sent", flush=True)
for sock in socks:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
        print(json.loads(data.partition(b"\\r\\n\\r\\n")[2])["pid"], flush=True)
    except Exception as error:
        print(json.dumps(repr(error)), flush=True)
"""


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    assert IP is not None
    return subprocess.run([IP, *args], capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"trdmig{os.getpid()}"
    made = ip("netns", "add", name)
    assert made.returncode == 0, made.stderr
    try:
        assert ip("-n", name, "link", "set", "lo", "up").returncode == 0
        setting = ip("netns", "exec", name, "sysctl", "-w", "net.ipv4.tcp_migrate_req=1")
        assert setting.returncode == 0, setting.stderr
        yield name
    finally:
        ip("netns", "del", name)


def test_a_dead_workers_queue_is_served_by_the_live_worker_at_once(namespace: str) -> None:
    assert IP is not None
    command = treadle_command(
        "serve", "tests.apps.procinfo:app", "--bind", "tcp:0:interface=127.0.0.1",
        "--workers", "2",
    )  # fmt: skip
    server = Running([IP, "netns", "exec", namespace, *command])
    client = None
    try:
        match = READY.search(server.wait_for_line(lambda line: READY.search(line) is not None))
        assert match is not None
        port, pids = match[1], [int(match[2]), int(match[3])]
        victim, survivor = pids
        os.kill(victim, signal.SIGSTOP)  # accepts nothing from now on; its queue fills
        client = subprocess.Popen(
            [IP, "netns", "exec", namespace, sys.executable, "-c", CLIENT, port, "16"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert client.stdout is not None
        assert client.stdout.readline().strip() == "sent"
        os.kill(victim, signal.SIGKILL)
        output, _ = client.communicate(timeout=60)
        answers = [json.loads(line) for line in output.split()]
        # Every request answered, all by the worker that was alive: the ones queued for the
        # dead worker moved to it when the supervisor closed the dead worker's socket, and
        # did not wait for the replacement (which would have answered some of them).
        assert answers == [survivor] * 16, answers
        server.wait_for_line(f"worker {victim} died (killed by SIGKILL)")
        assert server.stop(signal.SIGTERM, timeout=30) == 0
    finally:
        if client is not None and client.poll() is None:
            client.kill()
            client.wait(10)
        server.kill()
