"""``manage.py server`` in a fresh ``django-admin startproject``, as a developer first runs it.

The project is created by the test (Django's own template) with "treadle.django" added to
INSTALLED_APPS, DEBUG read from the environment and one failing view. With reload on (the
default) the terminal shows runserver's line per request and every 500's traceback; with
--noreload (production) it shows neither. A urls.py broken while reloading is named on a
500 page at once; with DEBUG a missing static file gets Django's 404 page.
"""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, Running

DEADLINE_S = 30.0
RUNSERVER_LINE = re.compile(
    r'^\[\d\d/\w{3}/\d{4} \d\d:\d\d:\d\d\] "GET /admin/login/ HTTP/1\.1" 200 (\d+)$'
)

FAILING_VIEW = """
from django.urls import path as _path


def boom(request):
    return 1 // 0


urlpatterns += [_path("boom", boom)]
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fresh")
    subprocess.run(
        [sys.executable, "-m", "django", "startproject", "proj", str(root)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    settings = root / "proj" / "settings.py"
    text = settings.read_text()
    edits = {
        "'django.contrib.staticfiles',\n": "'django.contrib.staticfiles',\n    'treadle.django',\n",
        "DEBUG = True": "DEBUG = __import__('os').environ['DJANGO_DEBUG'] == '1'",
        "ALLOWED_HOSTS = []": "ALLOWED_HOSTS = ['127.0.0.1']",
    }
    for old, new in edits.items():
        assert text.count(old) == 1, (old, text)  # Django's template changed: fix the edit
        text = text.replace(old, new)
    settings.write_text(text)
    with (root / "proj" / "urls.py").open("a") as urls:
        urls.write(FAILING_VIEW)
    return root


@pytest.fixture
def manage(project: Path) -> Iterator[object]:
    started: list[Running] = []

    def run(*args: str, debug: bool = True) -> Running:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TREADLE_", "DJANGO_"))}
        env.update(DJANGO_DEBUG="1" if debug else "0", PYTHONPATH=str(ROOT / "src"))
        server = Running([sys.executable, "manage.py", "server", *args], env=env, cwd=project)
        started.append(server)
        server.wait_ready(DEADLINE_S)
        return server

    yield run
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(10)


def get(server: Running, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=DEADLINE_S)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def stop(server: Running) -> str:
    """SIGTERM, wait for the exit, and the whole output."""
    assert server.stop(timeout=DEADLINE_S) == 0, server.output
    server._reader.join(DEADLINE_S)
    return server.output


def test_development_prints_runserver_lines(manage) -> None:  # noqa: ANN001
    server = manage("127.0.0.1:0")
    status, body = get(server, "/admin/login/")
    assert status == 200 and b"Log in" in body
    line = server.wait_for_line(lambda line: RUNSERVER_LINE.match(line) is not None, DEADLINE_S)
    assert RUNSERVER_LINE.match(line)[1] == str(len(body))  # type: ignore[index]
    assert get(server, "/nope")[0] == 404
    server.wait_for_line('"GET /nope HTTP/1.1" 404 ', DEADLINE_S)
    stop(server)


def test_development_prints_a_500_traceback_with_debug_off(manage) -> None:  # noqa: ANN001
    server = manage("127.0.0.1:0", debug=False)
    status, body = get(server, "/boom")
    assert status == 500 and b"Traceback" not in body  # the page stays Django's plain 500
    server.wait_for_line('"GET /boom HTTP/1.1" 500 ', DEADLINE_S)
    output = stop(server)
    assert output.count("Internal Server Error: /boom") == 1, output
    assert "ZeroDivisionError: integer division or modulo by zero" in output


def test_production_prints_neither(manage) -> None:  # noqa: ANN001
    server = manage("127.0.0.1:0", "--noreload", debug=False)
    assert get(server, "/admin/login/")[0] == 200
    assert get(server, "/boom")[0] == 500
    output = stop(server)  # everything it logged is in once it has exited
    assert "HTTP/1.1" not in output, output
    assert "Traceback" not in output, output


def get_full(server: Running, path: str) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=DEADLINE_S)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


def test_debug_passes_a_missing_static_file_to_djangos_404_page(manage) -> None:  # noqa: ANN001
    server = manage("127.0.0.1:0", "--noreload")
    status, kind, body = get_full(server, "/static/nope.css")
    assert (status, kind) == (404, "text/html; charset=utf-8"), body
    assert b"Page not found" in body and b"nope.css" in body
    # Files that exist still come from treadle's static handler (its validators say so).
    connection = http.client.HTTPConnection(server.host, server.port, timeout=DEADLINE_S)
    try:
        connection.request("GET", "/static/admin/css/base.css")
        response = connection.getresponse()
        assert response.status == 200 and response.read()
        assert response.getheader("ETag") and response.getheader("Last-Modified")
    finally:
        connection.close()
    stop(server)


def test_without_debug_a_missing_static_file_stays_a_plain_404(manage) -> None:  # noqa: ANN001
    server = manage("127.0.0.1:0", "--noreload", "--insecure", debug=False)
    assert get_full(server, "/static/nope.css") == (
        404,
        "text/plain; charset=utf-8",
        b"Not Found\n",
    )
    assert get_full(server, "/static/admin/css/base.css")[0] == 200
    stop(server)


def test_a_broken_urls_py_is_shown_on_every_page_until_fixed(manage, project: Path) -> None:  # noqa: ANN001
    urls = project / "proj" / "urls.py"
    good = urls.read_text()
    server = manage("127.0.0.1:0")
    try:
        assert get(server, "/admin/login/")[0] == 200
        urls.write_text(good + "\ndef broken(:\n")
        server.wait_for_line("answering 500 until a file changes", DEADLINE_S)
        began = time.monotonic()
        status, page = get(server, "/admin/login/")
        assert time.monotonic() - began < 2.0
        assert status == 500
        line = good.count("\n") + 2
        summary = f"The app could not be loaded: proj/urls.py, line {line}: SyntaxError: "
        assert page.decode().startswith(summary), page.decode()
    finally:
        urls.write_text(good)
    deadline = time.monotonic() + DEADLINE_S
    while get(server, "/admin/login/")[0] != 200:
        assert time.monotonic() < deadline, server.output
    stop(server)
