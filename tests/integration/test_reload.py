"""``treadle serve --reload``: real parent and child processes, real file edits.

The parent holds the listening socket; a rewritten module is served by a new child
without any request being refused; a syntax error prints one traceback and the parent
answers 500 naming it until the file is fixed;
SIGTERM ends everything with status 0. The change filter is checked directly.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import ssl
import time
from collections import Counter
from pathlib import Path

import pytest
from watchfiles import Change

from tests.conftest import Running, treadle_command
from tests.integration.tlscerts import make_certs
from tests.integration.wire import exchange
from treadle.reload import ChangeFilter, hold

APP = """\
import pathlib

def app(environ, start_response):
    body = b"{version}" + pathlib.Path("extra.json").read_bytes().strip()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""
REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def replace(path: Path, text: str, *, mtime_ns: int | None = None) -> None:
    """Write as editors do, in one rename: the watcher never sees a half-written file."""
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(text)
    if mtime_ns is not None:
        os.utime(temp, ns=(mtime_ns, mtime_ns))
    os.replace(temp, path)


def write_app(path: Path, version: str, *, mtime_ns: int | None = None) -> None:
    replace(path, APP.replace("{version}", version), mtime_ns=mtime_ns)


def get(port: int) -> str:
    """One request on a new connection; ConnectionRefusedError propagates."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        connection.request("GET", "/")
        return connection.getresponse().read().decode()
    finally:
        connection.close()


def get_any(port: int) -> tuple[int, str]:
    """(status, body) of one request on a new connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def start(tmp_path: Path, *args: str) -> Running:
    # Python writes .pyc files here (an empty value unsets it), as on a developer's machine.
    env = {"PYTHONDONTWRITEBYTECODE": ""}
    server = Running(treadle_command("serve", "mod:app", "--reload", *args), env=env, cwd=tmp_path)
    server.wait_ready()
    return server


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_app(tmp_path / "mod.py", "v1")
    (tmp_path / "extra.json").write_text("\n")
    return tmp_path


def test_edit_is_served_without_refusals_and_syntax_errors_wait(project: Path) -> None:
    module = project / "mod.py"
    server = start(project, "--bind", "tcp:0:interface=127.0.0.1")
    try:
        assert server.port != 0  # the real port of the parent's socket, not 0
        assert get(server.port) == "v1"

        # Same size and same mtime as v1: a stale .pyc would still look valid to Python.
        write_app(module, "v2", mtime_ns=module.stat().st_mtime_ns)
        seen = []
        deadline = time.monotonic() + 30
        while not seen or seen[-1] != "v2":
            assert time.monotonic() < deadline, f"no v2: {Counter(seen)}\n{server.output}"
            seen.append(get(server.port))  # a refused connection fails the test here
        assert set(seen) <= {"v1", "v2"}
        server.wait_for_line("reloading: mod.py")
        # A new worker logs the same address: the parent's socket, with its real port. Its
        # line may reach the test's reader thread after its first response: wait for it.
        listening = "Listening at: " + server.address
        server.wait_for_line(lambda line: server.output.count(listening) >= 2)

        replace(module, "def app(:\n")
        server.wait_for_line("answering 500 until a file changes")
        # The traceback, once, pointing at the broken line (treadle's own frames left out).
        where = f'File "{module}", line 1'
        assert server.output.count(where) == 1, server.output
        assert "SyntaxError: invalid syntax" in server.output
        assert "mod.py, line 1: SyntaxError: invalid syntax" in server.output

        # No worker runs: the parent answers at once with the error, as a plain page.
        began = time.monotonic()
        response = exchange(server.port, REQUEST, timeout=10)
        assert time.monotonic() - began < 2.0
        head, _, page = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 500 "), response
        assert b"Content-Type: text/plain; charset=utf-8" in head
        assert b"Connection: close" in head
        assert page.startswith(b"The app could not be loaded: mod.py, line 1: SyntaxError: ")
        assert where.encode() in page  # the whole traceback, as the terminal shows it

        write_app(module, "v3")
        deadline = time.monotonic() + 30
        while (body := get_any(server.port)) != (200, "v3"):
            assert body[0] == 500, body
            assert time.monotonic() < deadline, server.output
        assert server.output.count(where) == 1  # no restart loop, logged once
        assert server.output.count("answering 500") == 1
    finally:
        status = server.stop(signal.SIGTERM, timeout=20)
    assert status == 0, server.output


def test_an_ssl_bind_is_held_by_the_parent_and_served_over_tls(
    project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    certs = make_certs(tmp_path_factory.mktemp("certs"))
    ssl_bind = f"ssl:0:interface=127.0.0.1:privateKey={certs.key}:certKey={certs.cert}"
    server = start(project, "--bind", "tcp:0:interface=127.0.0.1", "--bind", ssl_bind)
    context = ssl.create_default_context(cafile=str(certs.ca))

    def get_tls(port: int) -> str:
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=20, context=context)
        try:
            connection.request("GET", "/")
            return connection.getresponse().read().decode()
        finally:
            connection.close()

    try:
        # Both listeners, held by the parent (before: the ssl: one was silently left out).
        match = re.search(r"reload: holding http://\S+ https://127\.0\.0\.1:(\d+)", server.output)
        assert match is not None, server.output
        port = int(match[1])
        assert get_tls(port) == "v1"
        write_app(project / "mod.py", "v2")
        deadline = time.monotonic() + 30
        while (body := get_tls(port)) != "v2":  # a refused connection fails the test here
            assert body == "v1", body
            assert time.monotonic() < deadline, server.output
    finally:
        status = server.stop(signal.SIGTERM, timeout=20)
    assert status == 0, server.output


def test_unix_socket_survives_restarts_and_include_globs_reload(
    project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # AF_UNIX paths are limited to ~107 bytes: keep the socket in a short directory.
    path = tmp_path_factory.mktemp("s") / "t.sock"
    server = start(project, "--bind", f"unix:{path}:mode=600", "--reload-include", "*.json")
    try:
        assert f"Listening at: unix:{path}" in server.output

        def ask() -> bytes:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.settimeout(20)
                client.connect(str(path))
                client.sendall(REQUEST)
                return read_all(client).partition(b"\r\n\r\n")[2]

        assert ask() == b"v1"
        replace(project / "extra.json", "+json\n")
        deadline = time.monotonic() + 30
        while (body := ask()) != b"v1+json":
            assert body == b"v1", body
            assert time.monotonic() < deadline, server.output
        server.wait_for_line("reloading: extra.json")
        # The old worker's port did not unlink the path, and the mode the parent set is kept.
        assert path.is_socket()
        assert oct(path.stat().st_mode & 0o777) == oct(0o600)
    finally:
        status = server.stop(signal.SIGINT, timeout=20)
    assert status == 0, server.output
    assert not path.exists()


def test_change_filter_takes_sources_and_templates_not_noise(tmp_path: Path) -> None:
    accepts = ChangeFilter([tmp_path], include=("*.css",), ignore=[tmp_path / "log.txt"])

    def taken(relative: str) -> bool:
        return accepts(Change.modified, str(tmp_path / relative))

    assert taken("mod.py")
    assert taken("pkg/templates/page.html")
    assert taken("templates/mail.txt")
    assert taken("static/site.css")
    for noise in (
        "log.txt",
        "pkg/__pycache__/mod.cpython-311.pyc",
        ".venv-3.12/lib/site.py",
        ".git/HEAD.py",
        "node_modules/x/index.py",
        "staticfiles/admin.html",
        "media/upload.txt",
        "db.sqlite3",
        "db.sqlite3-journal",
        "mod.py~",
        ".mod.py.swp",
        ".#mod.py",
        "4913",
        "README.md",
    ):
        assert not taken(noise), noise


def test_parent_binds_port_zero_to_a_real_port() -> None:
    held = hold("tcp:0:interface=127.0.0.1")
    assert held is not None
    try:
        host, port = held.sock.getsockname()
        assert held.address == f"http://127.0.0.1:{port}"
        assert held.child_bind == f"fd:{held.sock.fileno()}:family=INET"
    finally:
        held.sock.close()
    assert hold("ssl:0:privateKey=key.pem") is None  # only the child can open TLS ports
