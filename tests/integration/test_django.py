"""`python manage.py server` serving a copy of examples/djangosite, seen by real HTTP clients.

Each server is a child process on 127.0.0.1:0; tests wait for its "Listening at" line
(on its output, or in a log file when settings.LOGGING or --log-file sends it there).
The site copy is migrated and collected once per module; servers are shared where the
tests do not change their configuration.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

from tests.conftest import LISTENING, ROOT, Running
from treadle.django.config import bind_from_addrport
from treadle.errors import ConfigError

EXAMPLE = ROOT / "examples" / "djangosite"
CHECKSITE = Path(__file__).resolve().parent / "django" / "checksite"
DEADLINE_S = 30.0
ADMIN_USER, ADMIN_PASSWORD = "demo", "demo-password"
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@dataclass
class Site:
    root: Path
    env: dict[str, str]

    def refused(self, *flags: str) -> subprocess.CompletedProcess[str]:
        """`manage.py server --noreload FLAGS` that must stop at once with status 2."""
        result = subprocess.run(
            [sys.executable, "manage.py", "server", "--noreload", *flags],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, result.stderr
        return result

    def manage(self, *args: str, extra_env: dict[str, str] | None = None) -> Running:
        return Running(
            [sys.executable, "manage.py", *args],
            env={**self.env, **(extra_env or {})},
            cwd=self.root,
        )


def prepare_site(root: Path, env: dict[str, str]) -> None:
    """Migrate, collect static files and make the demo user in a copy of the example site."""
    for command in (
        ["migrate", "--noinput"],
        ["collectstatic", "--noinput"],
        ["createsuperuser", "--noinput", "--username", ADMIN_USER, "--email", "demo@example.com"],
    ):
        subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=root,
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """A migrated, collected copy of the example site, with checksite beside it."""
    root = tmp_path_factory.mktemp("djangosite")
    ignore = shutil.ignore_patterns("__pycache__", "db.sqlite3", "staticfiles", "media")
    shutil.copytree(EXAMPLE, root, dirs_exist_ok=True, ignore=ignore)
    shutil.copytree(CHECKSITE, root / "checksite", ignore=ignore)
    env = {
        **os.environ,
        "DJANGO_DEBUG": "0",
        "DJANGO_SETTINGS_MODULE": "djangosite.settings",
        "PYTHONPATH": str(ROOT / "src"),
        "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD,
    }
    env = {k: v for k, v in env.items() if not k.startswith("TREADLE_")}
    prepare_site(root, env)
    # A settings module naming a WSGI application that cannot be imported.
    (root / "djangosite" / "settings_missing_wsgi.py").write_text(
        "from djangosite.settings import *  # noqa: F403\nWSGI_APPLICATION = 'no_such.wsgi.app'\n"
    )
    # Known to the staticfiles finders but never collected: only DEBUG/--insecure serve it.
    (root / "library" / "static" / "library" / "late.txt").write_text("found by the finders\n")
    return Site(root, env)


def stop(server: Running) -> None:
    code = server.stop()
    server._reader.join(DEADLINE_S)  # it reads until EOF; then the pipe can be closed
    if server.proc.stdout is not None:
        server.proc.stdout.close()
    assert code == 0, f"exit status {code}:\n{server.output}"


@pytest.fixture(scope="module")
def example(site: Site) -> Iterator[Running]:
    """The example site as shipped (DEBUG off), served with static files from STATIC_ROOT."""
    server = site.manage("server", "127.0.0.1:0", "--noreload")
    server.wait_ready(DEADLINE_S)
    yield server
    stop(server)


def request(
    server: Running,
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=DEADLINE_S)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def wait_for_file_line(
    path: Path, predicate: Callable[[str], bool] | str, server: Running, timeout: float = DEADLINE_S
) -> str:
    """Poll a log file (with a deadline) until a line matches; fail early if the server died."""
    if isinstance(predicate, str):
        text = predicate
        predicate = lambda line: text in line  # noqa: E731
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        for line in lines:
            if predicate(line):
                return line
        if time.monotonic() > deadline or server.proc.poll() is not None:
            raise AssertionError(
                f"no matching line in {path} (exit={server.proc.poll()}):\n"
                + "\n".join(lines)
                + f"\n--- output:\n{server.output}"
            )
        time.sleep(0.02)  # polling a file: there is nothing to block on


def ready_from_file(server: Running, path: Path) -> str:
    line = wait_for_file_line(path, lambda line: LISTENING.search(line) is not None, server)
    match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    assert match, line
    server.port = int(match.group(1))
    return line


# -- addrport, as runserver ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("addrport", "ipv6", "bind"),
    [
        (None, False, None),
        ("8000", False, "127.0.0.1:8000"),
        ("0.0.0.0:8080", False, "0.0.0.0:8080"),
        ("0:8000", False, "0.0.0.0:8000"),
        ("[::1]:8000", False, "[::1]:8000"),
        ("localhost:9000", False, "localhost:9000"),
        (None, True, "[::1]:8000"),
        ("8001", True, "[::1]:8001"),
    ],
)
def test_addrport_forms(addrport: str | None, ipv6: bool, bind: str | None) -> None:
    assert bind_from_addrport(addrport, ipv6=ipv6) == bind


@pytest.mark.parametrize("addrport", ["notaport", "1.2.3.4:", ":8000", "[::1]"])
def test_bad_addrport_is_refused(addrport: str) -> None:
    with pytest.raises(ConfigError):
        bind_from_addrport(addrport)


def test_bad_addrport_stops_the_command(site: Site) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "server", "notaport", "--noreload"],
        cwd=site.root,
        env=site.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "'notaport' is not a valid port number" in result.stderr


def test_abbreviated_flag_is_refused_with_a_guess(site: Site) -> None:
    """`--thread 4` must not run as `--threads 4`: a typo never changes what runs."""
    result = site.refused("--thread", "4")
    assert "unrecognized argument: --thread (did you mean --threads?)" in result.stderr
    assert "Listening at" not in result.stderr + result.stdout


WORKERS_READY = re.compile(
    r"2 workers ready at http://127\.0\.0\.1:(\d+) .*worker pids (\d+), (\d+)\)"
)


def test_workers_run_under_the_supervisor_with_a_pid_file(site: Site, tmp_path: Path) -> None:
    pid_file = tmp_path / "treadle.pid"
    # No --noreload: asking for workers turns the development reloader off.
    server = site.manage("server", "127.0.0.1:0", "--workers", "2", "--pid-file", str(pid_file))
    try:
        line = server.wait_for_line(lambda text: WORKERS_READY.search(text) is not None, 60)
        match = WORKERS_READY.search(line)
        assert match is not None
        port, workers = int(match[1]), {int(match[2]), int(match[3])}
        # Each worker ran the command (system checks, the WSGI app) and listens on the port.
        for pid in workers:
            server.wait_for_line(f"Listening at: http://127.0.0.1:{port} (pid {pid},")
        assert int(pid_file.read_text()) == server.proc.pid  # the supervisor's
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE_S)
        connection.request("GET", "/admin/login/")
        assert connection.getresponse().status == 200
        connection.close()
    finally:
        stop(server)
    assert not pid_file.exists()


def test_a_worker_that_cannot_load_the_project_stops_the_supervisor(site: Site) -> None:
    server = site.manage(
        "server", "127.0.0.1:0", "--workers", "2",
        extra_env={"DJANGO_SETTINGS_MODULE": "djangosite.settings_missing_wsgi"},
    )  # fmt: skip
    settings = site.root / "djangosite" / "settings_missing_wsgi.py"
    assert settings.exists(), "made by the site fixture"
    assert server.proc.wait(60) == 3, server.output
    assert "could not start (exit status 3" in server.output
    assert "replacing" not in server.output


def test_user_group_and_umask_are_not_offered(site: Site) -> None:
    for flag in ("--user", "--group", "--umask"):
        result = site.refused(flag, "1")
        assert f"unrecognized argument: {flag}" in result.stderr


def test_pid_file_with_the_reloader_is_refused(site: Site, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "server", "127.0.0.1:0", "--pid-file", str(tmp_path / "p")],
        cwd=site.root, env=site.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "the development reloader applies none of them" in result.stderr
    assert not (tmp_path / "p").exists()


# -- the example site -------------------------------------------------------------------------


def test_admin_login_with_csrf_and_session(example: Running) -> None:
    base = f"http://127.0.0.1:{example.port}"
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"{base}/admin/login/?next=/admin/", timeout=DEADLINE_S) as response:
        page = response.read().decode()
    token = CSRF_INPUT.search(page)
    assert token, page
    assert "csrftoken" in {cookie.name for cookie in jar}
    form = urllib.parse.urlencode(
        {
            "csrfmiddlewaretoken": token.group(1),
            "username": ADMIN_USER,
            "password": ADMIN_PASSWORD,
            "next": "/admin/",
        }
    ).encode()
    with opener.open(
        f"{base}/admin/login/?next=/admin/", data=form, timeout=DEADLINE_S
    ) as response:
        assert response.status == 200
        assert response.url == f"{base}/admin/"  # the 302 after a good login was followed
        assert "Site administration" in response.read().decode()
    assert "sessionid" in {cookie.name for cookie in jar}
    # The admin's own stylesheet, linked by its hashed name and served from STATIC_ROOT.
    stylesheet = re.search(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', page)
    assert stylesheet, page
    status, headers, body = request(example, stylesheet.group(1))
    assert status == 200
    assert "immutable" in headers["Cache-Control"]
    assert b"body" in body


def test_upload_of_20_mib(example: Running) -> None:
    status, headers, page = request(example, "/upload/")
    assert status == 200
    cookie = headers["Set-Cookie"].split(";")[0]
    token = CSRF_INPUT.search(page.decode())
    assert token
    data = os.urandom(20 * 1024 * 1024)
    boundary = "treadle-boundary-7MA4YWxkTrZu0gW"
    body = b"".join(
        [
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrfmiddlewaretoken"\r\n\r\n'
            f"{token.group(1)}\r\n".encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode(),
            data,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    status, _, answer = request(
        example,
        "/upload/",
        "POST",
        {"Content-Type": f"multipart/form-data; boundary={boundary}", "Cookie": cookie},
        body,
    )
    text = answer.decode()
    assert status == 200, text
    assert f'id="upload-size">{len(data)} bytes' in text
    assert hashlib.sha256(data).hexdigest() in text


def test_streaming_view_sends_each_line_as_it_is_made(example: Running) -> None:
    connection = http.client.HTTPConnection(example.host, example.port, timeout=DEADLINE_S)
    try:
        connection.request("GET", "/stream/?delay=0.1")
        response = connection.getresponse()
        assert response.status == 200
        assert response.headers["Transfer-Encoding"] == "chunked"
        assert response.headers["Cache-Control"] == "no-store"
        first = response.readline()
        first_seen = time.time()
        rest = response.read().decode().splitlines()
    finally:
        connection.close()
    assert first.startswith(b"line 1 of 10 at ")
    assert len(rest) == 9 and rest[-1].startswith("line 10 of 10 at ")
    made_last = float(rest[-1].rsplit(" ", 1)[1])
    assert first_seen < made_last, "line 1 only arrived after line 10 was made: buffered"


@pytest.fixture(scope="module")
def manifest(site: Site) -> dict[str, str]:
    return json.loads((site.root / "staticfiles" / "staticfiles.json").read_text())["paths"]


def test_hashed_static_file_is_immutable(
    example: Running, site: Site, manifest: dict[str, str]
) -> None:
    name = manifest["library/site.css"]
    assert re.fullmatch(r"library/site\.[0-9a-f]{12}\.css", name)
    expected = (site.root / "staticfiles" / name).read_bytes()
    status, headers, body = request(example, f"/static/{name}")
    assert status == 200
    assert body == expected
    assert headers["Content-Type"] == "text/css; charset=utf-8"
    assert headers["Cache-Control"] == "max-age=31536000, public, immutable"
    status, headers, _ = request(example, "/static/library/site.css")
    assert status == 200
    assert "immutable" not in headers["Cache-Control"]  # unhashed names may change


def test_static_revalidation_and_ranges(example: Running, manifest: dict[str, str]) -> None:
    path = "/static/" + manifest["library/site.js"]
    status, headers, whole = request(example, path)
    assert status == 200
    etag = headers["ETag"]
    status, headers, body = request(example, path, headers={"If-None-Match": etag})
    assert (status, body) == (304, b"")
    assert headers["ETag"] == etag
    status, headers, body = request(example, path, headers={"Range": "bytes=0-9"})
    assert status == 206
    assert headers["Content-Range"] == f"bytes 0-9/{len(whole)}"
    assert body == whole[:10]


@pytest.mark.parametrize(
    "path",
    [
        "/static/library/missing.css",
        "/static/library/late.txt",  # only the finders know it; DEBUG is off
        "/static/../djangosite/settings.py",
        "/static/%2e%2e/djangosite/settings.py",
        "/static/%2E%2E/%2e%2e/manage.py",
        "/static/..%2fdjangosite%2fsettings.py",
        "/static/library/..%2f..%2fdjangosite/settings.py",
        "/static/library%5c..%5c..%5cdjangosite%5csettings.py",
        "/static/%2fetc%2fpasswd",
        "/static//etc/passwd",
        "/static/library/site.css%00",
        "/static/library/site.css%00.txt",
        "/static/library/",
        "/static/",
    ],
)
def test_static_misses_and_traversal_give_404(example: Running, path: str) -> None:
    status, _, body = request(example, path)
    assert status == 404, body
    assert b"SECRET_KEY" not in body and b"root:" not in body


# -- --script-name with DEBUG on (static files from the finders) ------------------------------


@pytest.fixture(scope="module")
def under_app(site: Site) -> Iterator[Running]:
    server = site.manage(
        "server",
        "127.0.0.1:0",
        "--noreload",
        "--script-name",
        "/app",
        extra_env={"DJANGO_DEBUG": "1"},
    )
    server.wait_ready(DEADLINE_S)
    yield server
    stop(server)


def test_script_name_prefixes_reversed_urls(under_app: Running) -> None:
    status, _, body = request(under_app, "/app/")
    page = body.decode()
    assert status == 200, page
    assert 'href="/app/books/"' in page
    assert 'href="/app/admin/"' in page
    # DEBUG: Django links the source names, which the staticfiles finders serve.
    assert 'href="/app/static/library/site.css"' in page
    status, headers, _ = request(under_app, "/app/static/library/site.css")
    assert status == 200
    assert headers["Content-Type"] == "text/css; charset=utf-8"


def test_debug_serves_from_the_finders_not_static_root(
    under_app: Running, manifest: dict[str, str]
) -> None:
    status, _, body = request(under_app, "/app/static/library/late.txt")
    assert (status, body) == (200, b"found by the finders\n")
    status, _, _ = request(under_app, "/app/static/" + manifest["library/site.css"])
    assert status == 404


@pytest.mark.parametrize("path", ["/books/", "/", "/static/library/site.css", "/application/"])
def test_outside_the_script_name_is_404_naming_it(under_app: Running, path: str) -> None:
    status, _, body = request(under_app, path)
    assert status == 404
    assert b"/app/" in body


# -- settings.LOGGING, settings.TREADLE, the middleware (checksite) ---------------------------


@dataclass
class Logged:
    server: Running
    log_file: Path
    listening: str


@pytest.fixture(scope="module")
def checksite(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    """checksite's LOGGING sends treadle's messages to a file; its TREADLE says 3 threads."""
    log_file = tmp_path_factory.mktemp("logs") / "checksite.log"
    server = site.manage(
        "server",
        "127.0.0.1:0",
        "--noreload",
        "--access-log-format",
        "%(m)s %(U)s view=%(view)s status=%(s)s",
        extra_env={
            "DJANGO_SETTINGS_MODULE": "checksite.settings",
            "CHECKSITE_LOG_FILE": str(log_file),
        },
    )
    listening = ready_from_file(server, log_file)
    yield Logged(server, log_file, listening)
    stop(server)


def test_settings_logging_routes_treadle_to_a_file(checksite: Logged) -> None:
    assert checksite.listening.startswith("INFO treadle: Listening at: http://127.0.0.1:")
    assert "Listening at" not in checksite.server.output  # nothing on the console


def test_treadle_settings_dict_gives_defaults(checksite: Logged) -> None:
    assert "(pid " in checksite.listening and ", 3 threads)" in checksite.listening


def test_middleware_names_the_view_in_the_access_log(checksite: Logged) -> None:
    status, _, _ = request(checksite.server, "/books/")
    assert status == 200
    wait_for_file_line(
        checksite.log_file,
        "treadle.access: GET /books/ view=book-list status=200",
        checksite.server,
    )


def test_client_going_away_is_one_info_line_not_a_500(checksite: Logged) -> None:
    path = "/checks/wait-for-exit/"
    with socket.create_connection(("127.0.0.1", checksite.server.port), DEADLINE_S) as client:
        client.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        wait_for_file_line(checksite.log_file, f"checksite: view started: {path}", checksite.server)
        # Close with a reset (a plain FIN cancels the request too: treadle takes either as the
        # client going away, not as a half-close).
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    line = wait_for_file_line(checksite.log_file, "client went away", checksite.server)
    assert line == f"INFO treadle: client went away: wait-for-exit {path}"
    wait_for_file_line(checksite.log_file, f"GET {path} view=wait-for-exit", checksite.server)
    text = checksite.log_file.read_text()
    assert "Internal Server Error" not in text and "Traceback" not in text
    assert "Traceback" not in checksite.server.output


@pytest.mark.parametrize(
    ("env_threads", "flag_threads", "expected"),
    [("4", None, 4), ("4", "5", 5)],
    ids=["env-beats-settings", "flag-beats-env"],
)
def test_precedence_and_log_file(
    site: Site,
    tmp_path: Path,
    env_threads: str,
    flag_threads: str | None,
    expected: int,
) -> None:
    settings_log = tmp_path / "settings.log"
    flag_log = tmp_path / "flag.log"
    args = ["server", "127.0.0.1:0", "--noreload", "--log-file", str(flag_log)]
    if flag_threads:
        args += ["--threads", flag_threads]
    server = site.manage(
        *args,
        extra_env={
            "DJANGO_SETTINGS_MODULE": "checksite.settings",
            "CHECKSITE_LOG_FILE": str(settings_log),
            "TREADLE_THREADS": env_threads,
        },
    )
    try:
        listening = ready_from_file(server, flag_log)
        assert f", {expected} threads)" in listening
        status, _, _ = request(server, "/books.json")
        assert status == 200
    finally:
        stop(server)
    # --log-file takes treadle's messages away from the handlers settings.LOGGING gave it.
    assert "Listening at" not in (settings_log.read_text() if settings_log.exists() else "")


# -- auto-reload (on by default, as runserver) --------------------------------------------


def test_reload_restarts_on_a_code_change_keeping_the_port(site: Site) -> None:
    server = site.manage("server", "127.0.0.1:0")
    try:
        first = server.wait_for_line(lambda line: LISTENING.search(line) is not None, DEADLINE_S)
        server.wait_ready(DEADLINE_S)
        assert "reload: holding" in server.output
        assert request(server, "/books.json")[0] == 200
        (site.root / "library" / "reload_marker.py").write_text("CHANGED = True\n")
        second = server.wait_for_line(
            lambda line: LISTENING.search(line) is not None and line != first, DEADLINE_S
        )
        assert f"127.0.0.1:{server.port} " in second  # the parent kept the socket
        assert request(server, "/books.json")[0] == 200
    finally:
        stop(server)
