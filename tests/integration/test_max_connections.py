"""--max-connections: at the limit treadle stops accepting; waiting clients are served later.

Integration tier: the real server, real sockets on 127.0.0.1.
"""

from __future__ import annotations

import shlex
import socket

from tests.conftest import Running, treadle_command
from tests.integration.wire import connect, read_response

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def test_at_the_limit_a_new_client_waits_and_is_served_once_a_connection_closes(serve) -> None:
    server = serve("tests.apps.hello:app", "--max-connections", "2")
    first, second = connect(server.port), connect(server.port)
    for sock in (first, second):
        sock.sendall(GET)
        assert read_response(sock).status == 200  # both accepted, kept alive
    server.wait_for_line("connections open (--max-connections)")
    # The kernel completes a third client's handshake: it waits in the backlog until the
    # first connection closes, then it is accepted and answered.
    wait_then_get_served(server.port, [second, first])
    with connect(server.port) as fourth:  # below the limit again: served at once
        fourth.sendall(GET)
        assert read_response(fourth).status == 200
    second.close()


def wait_then_get_served(port: int, opened: list[socket.socket]) -> None:
    """A new client waits while ``opened`` fill the limit, and is answered once one closes."""
    with connect(port) as late:
        late.sendall(GET)
        late.settimeout(1.0)
        try:
            early = late.recv(1024)
        except TimeoutError:
            early = b""
        assert early == b"", "at the limit a new client must wait, not be answered or refused"
        opened.pop().close()
        late.settimeout(10)
        assert read_response(late).status == 200


def test_the_default_limit_is_half_the_open_file_limit() -> None:
    # A hard limit of 64 descriptors cannot be raised: the default is then 32 connections.
    command = " ".join(shlex.quote(arg) for arg in treadle_command("serve", "tests.apps.hello:app"))
    server = Running(
        ["sh", "-c", f"ulimit -n 64 && exec {command} --bind tcp:0:interface=127.0.0.1"]
    )
    try:
        server.wait_ready()
        opened = [connect(server.port) for _ in range(32)]
        for sock in opened:
            sock.sendall(GET)
            assert read_response(sock).status == 200
        wait_then_get_served(server.port, opened)
        for sock in opened:
            sock.close()
    finally:
        server.stop()
