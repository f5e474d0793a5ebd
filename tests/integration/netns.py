"""Network namespaces joined to this one by a veth pair, for tests that need other "hosts".

Every name carries the pid of the test process that made it (``trd12345h0``), so what a
killed run left behind (its teardown never ran) can be told apart and removed: its pid is
gone. Addresses are taken from a /24 that no link on this machine uses yet. Two links with
addresses in one network make the kernel route by the older one, so a stale link left in
that network would swallow the test's packets (a server that never comes UP behind HAProxy).

This module only builds and removes namespaces and links; it starts no server.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from treadle.supervisor.pidfile import process_running

IP = shutil.which("ip") or ("/usr/sbin/ip" if Path("/usr/sbin/ip").exists() else None)


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    assert IP is not None
    return subprocess.run([IP, *args], capture_output=True, text=True, timeout=30, check=False)


def clear_leftovers(prefix: str) -> list[str]:
    """Remove namespaces and links named ``{prefix}{pid}...`` whose test process is gone.

    Processes still running in such a namespace (a server the killed run started) are
    killed first. Returns the names removed.
    """
    pattern = re.compile(rf"{re.escape(prefix)}(\d+)[hv]\d+$")
    removed = []
    for line in ip("netns", "list").stdout.splitlines():
        name = line.split(" ", 1)[0]
        match = pattern.match(name)
        if match is None or process_running(int(match[1])):
            continue
        for pid in ip("netns", "pids", name).stdout.split():
            with contextlib.suppress(ProcessLookupError):  # it ended by itself meanwhile
                os.kill(int(pid), signal.SIGKILL)
        if ip("netns", "del", name).returncode == 0:
            removed.append(name)
    for line in ip("-o", "link").stdout.splitlines():
        # "7: trd123v0@if6: <BROADCAST,..." (the peer after "@")
        name = line.split(": ", 2)[1].split("@", 1)[0]
        match = pattern.match(name)
        if match is None or process_running(int(match[1])):
            continue
        if ip("link", "del", name).returncode == 0:
            removed.append(name)
    return removed


def free_network(second: int) -> int:
    """A third octet X such that no link here has an address in ``10.{second}.X.0/24``.

    The search starts at a place set by this process's pid, so two test runs at once on
    one machine rarely try the same network first.
    """
    taken = {
        int(match[1])
        for match in re.finditer(rf"inet 10\.{second}\.(\d+)\.", ip("-4", "-o", "addr").stdout)
    }
    start = os.getpid() % 200
    for step in range(200):
        third = 20 + (start + step) % 200
        if third not in taken:
            return third
    raise OSError(f"every network 10.{second}.20-219.0/24 is in use here")


@dataclass(frozen=True)
class Joined:
    """A namespace and the veth pair joining it to this one, each end with a /30 address."""

    netns: str
    outside: str  # the link's end in this namespace
    gateway: str  # this side's address
    address: str  # the namespace's own address

    def create(self) -> None:
        inside = "eth0"  # the only link in the namespace besides lo
        steps = [
            ("netns", "add", self.netns),
            ("link", "add", self.outside, "type", "veth", "peer", "name", inside, "netns",
             self.netns),
            ("addr", "add", f"{self.gateway}/30", "dev", self.outside),
            ("link", "set", self.outside, "up"),
            ("-n", self.netns, "addr", "add", f"{self.address}/30", "dev", inside),
            ("-n", self.netns, "link", "set", inside, "up"),
            ("-n", self.netns, "link", "set", "lo", "up"),
        ]  # fmt: skip
        for step in steps:
            done = ip(*step)
            if done.returncode != 0:
                raise OSError(f"ip {' '.join(step)}: {done.stderr.strip()}")

    def destroy(self) -> list[str]:
        """Remove the link and the namespace; the names that could not be removed."""
        ip("link", "del", self.outside)  # deleting one end of a veth pair deletes both
        if ip("netns", "del", self.netns).returncode != 0 and self.netns in ip("netns").stdout:
            return [self.netns]
        return []


def joined_pair(prefix: str, second: int) -> list[Joined]:
    """Two namespaces ``{prefix}{pid}h0`` and ``h1`` on two /30s of one free /24 (not made yet).

    Leftovers of killed runs with the same prefix are removed first.
    """
    clear_leftovers(prefix)
    third = free_network(second)
    pid = os.getpid()
    return [
        Joined(
            netns=f"{prefix}{pid}h{number}",
            outside=f"{prefix}{pid}v{number}",  # at most 15 bytes: an interface name
            gateway=f"10.{second}.{third}.{4 * number + 1}",
            address=f"10.{second}.{third}.{4 * number + 2}",
        )
        for number in range(2)
    ]
