"""Which worker slots the kernel gives new TCP connections to: a reuseport BPF program.

Composition layer, used by the arbiter in the supervisor (Linux only; elsewhere, and if the
kernel refuses, connections are spread by the kernel's hash over every slot). The sockets of
one address form a reuseport group; a classic BPF program attached to the group
(SO_ATTACH_REUSEPORT_CBPF, Linux 4.5+) returns the index of the socket for each new
connection. Ours picks at random among the slots whose worker accepts, so no new connection
waits in the queue of a worker that died, is starting or is stuck. It never touches a
connection and never accepts one.
"""

from __future__ import annotations

import ctypes
import logging
import socket
import struct
from collections.abc import Sequence

log = logging.getLogger("treadle")

SO_ATTACH_REUSEPORT_CBPF = 51  # <asm-generic/socket.h>
SO_DETACH_REUSEPORT_BPF = 68
# <linux/filter.h>: classic BPF opcodes and the "random number" ancillary load.
LD_W_ABS = 0x20
ALU_MOD_K = 0x94
JMP_JEQ_K = 0x15
RET_K = 0x06
SKF_AD_RANDOM = (-0x1000 + 56) & 0xFFFFFFFF
MAX_INSTRUCTIONS = 4096  # BPF_MAXINSNS


MIGRATE_REQ = "/proc/sys/net/ipv4/tcp_migrate_req"


def migration_on() -> bool:
    """Does the kernel move a closed listener's queue to its reuseport siblings (Linux
    5.14+, ``sysctl net.ipv4.tcp_migrate_req=1``, per network namespace)?"""
    try:
        with open(MIGRATE_REQ) as setting:
            return setting.read().strip() == "1"
    except OSError:
        return False


class Group:
    """The kernel's order of one reuseport group's sockets, mirrored by slot number.

    A socket joins at the end when it listens; when one closes, the kernel moves the last
    socket into its place (net/core/sock_reuseport.c), and so does this mirror.
    """

    def __init__(self) -> None:
        self.order: list[int] = []

    def joined(self, slot: int) -> None:
        self.order.append(slot)

    def left(self, slot: int) -> None:
        if slot not in self.order:
            return
        index = self.order.index(slot)
        last = self.order.pop()
        if index < len(self.order):
            self.order[index] = last

    def indices(self, slots: Sequence[int]) -> list[int]:
        return [self.order.index(slot) for slot in slots if slot in self.order]


def program(indices: Sequence[int]) -> list[tuple[int, int, int, int]]:
    """A random pick among ``indices`` (positions in the group), as BPF instructions."""
    if not indices or 2 + 2 * len(indices) + 1 > MAX_INSTRUCTIONS:
        raise ValueError("no socket to choose, or too many")
    code = [(LD_W_ABS, 0, 0, SKF_AD_RANDOM), (ALU_MOD_K, 0, 0, len(indices))]
    for number, index in enumerate(indices):
        code.append((JMP_JEQ_K, 0, 1, number))  # equal: the next instruction; else skip it
        code.append((RET_K, 0, 0, index))
    code.append((RET_K, 0, 0, indices[0]))  # not reached: A < len(indices)
    return code


def steer(sock: socket.socket, indices: Sequence[int]) -> bool:
    """Attach the program to ``sock``'s group (any member will do); with no index, detach
    it (the kernel's hash over every socket again). False when the kernel refuses."""
    try:
        if not indices:
            sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, 0)
            return True
        code = program(indices)
        filters = (ctypes.c_ubyte * (8 * len(code)))()
        for number, instruction in enumerate(code):
            struct.pack_into("=HBBI", filters, 8 * number, *instruction)
        # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
        fprog = struct.pack("@HP", len(code), ctypes.addressof(filters))
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
        return True
    except OSError as error:
        if indices or error.errno not in (2,):  # ENOENT: nothing was attached
            log.debug("cannot steer connections over worker sockets: %s", error)
        return not indices
