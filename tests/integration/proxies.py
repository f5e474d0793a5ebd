"""Real proxies in front of treadle for the integration tests: nginx and HAProxy processes.

Each is started in the foreground with every path it writes (pid, logs, temp files) in the
test's own directory, waited on until it accepts (with a deadline), and stopped by its pid.
``Load`` drives keep-alive clients through a proxy from threads and counts every answer
that is not 2xx and every socket error, which is what a user behind the proxy would see.
"""

from __future__ import annotations

import collections
import http.client
import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
HAPROXY = shutil.which("haproxy") or (
    "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_accepting(host: str, port: int, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    """Connect until the proxy accepts; fail at once if it exited, with its log."""
    name = Path(str(proc.args[0])).name if isinstance(proc.args, list) else str(proc.args)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            text = log.read_text() if log.exists() else ""
            raise AssertionError(f"{name} exited {proc.returncode}:\n{text}")
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} not accepting on {port} in {timeout} s")
        threading.Event().wait(0.02)  # polling the port: the proxy has no readiness signal


class Proxy:
    """A proxy process running in the foreground with its files under ``directory``."""

    def __init__(self, args: list[str], directory: Path, log: Path) -> None:
        self.directory = directory
        self.log = log
        self.output = open(directory / "stdout.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=self.output, stderr=subprocess.STDOUT
        )

    def wait_accepting(self, port: int, timeout: float = 15.0) -> None:
        wait_accepting("127.0.0.1", port, self.proc, self.log, timeout)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.output.close()


NGINX_CONF = """\
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 100000;

    upstream treadle {{
        server {upstream};
        keepalive 32;
        # Below treadle's --keep-alive (5 s): nginx drops an idle connection before
        # treadle does, so it never sends a request on one treadle is closing.
        keepalive_timeout 4s;
    }}
    server {{
        listen 127.0.0.1:{port};
        # Above treadle's --max-body (100 MiB), so that treadle's own 413 is tested.
        client_max_body_size 200m;
        location / {{
            proxy_pass http://treadle;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
        # Streamed responses reach the client as the app yields them.
        location /stream {{
            proxy_pass http://treadle;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
        # Uploads pass through as they arrive instead of being spooled by nginx first.
        location /upload-unbuffered {{
            proxy_pass http://treadle/upload;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_request_buffering off;
        }}
    }}
}}
"""


def start_nginx(directory: Path, upstream: str) -> tuple[Proxy, int]:
    """nginx on 127.0.0.1 in front of ``upstream`` (``127.0.0.1:PORT`` or ``unix:PATH``)."""
    assert NGINX is not None
    port = free_port()
    conf = directory / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=directory, upstream=upstream, port=port))
    log = directory / "error.log"
    # -e: the error log before the configuration is read (nginx 1.19.5+), so nothing is
    # written under /var/log even when that directory is missing.
    args = [NGINX, "-p", str(directory), "-c", str(conf), "-e", str(log)]
    proxy = Proxy(args, directory, log)
    try:
        proxy.wait_accepting(port)
    except BaseException:
        proxy.stop()
        raise
    return proxy, port


class Load:
    """Keep-alive clients in threads, each sending GETs (or POSTs) in a loop until ``finish``.

    ``retry_reused``: as browsers and curl do (RFC 9112 §9.3.1), a GET sent on a kept-alive
    connection that closes without any response is sent again, once, on a new connection.
    Each such retry is counted in ``retries``; a failure of the new connection is an error.
    """

    def __init__(
        self,
        host: str,
        port: int,
        clients: int = 8,
        path: str = "/",
        body: bytes | None = None,
        retry_reused: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.path = path
        self.body = body  # a POST with this body, else a GET
        self.retry_reused = retry_reused and body is None
        self.retries = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answered = 0
        self.pids: collections.Counter[int] = collections.Counter()
        self.bad_statuses: collections.Counter[int] = collections.Counter()
        self.errors: list[str] = []
        # (seconds since start, what): the test's own steps and each error, for the summary.
        self.started = time.monotonic()
        self.events: list[tuple[float, str]] = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=20)
        while not self.stop.is_set():
            reused = connection.sock is not None  # http.client reconnects when it is None
            try:
                if self.body is None:
                    connection.request("GET", self.path)
                else:
                    connection.request("POST", self.path, body=self.body)
                response = connection.getresponse()
                body = response.read()
                # http.client reconnects on the next request once the proxy said close.
            except (OSError, http.client.HTTPException) as error:
                retry = (
                    self.retry_reused and reused and type(error) is http.client.RemoteDisconnected
                )
                with self.lock:
                    if retry:
                        self.retries += 1  # the loop's next GET, on a new connection, is it
                    else:
                        self.errors.append(repr(error))
                    what = "retried" if retry else "error"
                    self.events.append((time.monotonic() - self.started, f"{what} {error!r}"))
                connection.close()
                continue
            with self.lock:
                if 200 <= response.status < 300:
                    self.answered += 1
                    self.pids[json.loads(body)["pid"]] += 1
                else:
                    self.bad_statuses[response.status] += 1
        connection.close()

    @property
    def failures(self) -> int:
        with self.lock:
            return sum(self.bad_statuses.values()) + len(self.errors)

    def mark(self, step: str) -> None:
        """Note a step of the test, so the summary shows when errors came relative to it."""
        with self.lock:
            self.events.append((time.monotonic() - self.started, step))

    def summary(self) -> str:
        with self.lock:
            timeline = "\n".join(f"  {at:7.3f} s  {what}" for at, what in self.events[:40])
            return (
                f"{self.answered} answered 2xx, non-2xx {dict(self.bad_statuses)}, "
                f"errors {self.errors[:5]} ({len(self.errors)} in all), "
                f"retried on a new connection {self.retries}\n{timeline}"
            )

    def wait_for(self, wanted: set[int], timeout: float = 20.0, every: bool = True) -> None:
        """Until every pid in ``wanted`` (or, ``every=False``, one of them) has answered."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                seen = set(self.pids)
            if wanted <= seen if every else wanted & seen:
                return
            assert time.monotonic() < deadline, f"{wanted - seen} never answered; {self.summary()}"
            self.stop.wait(0.02)  # polling our own counters, not waiting on the server

    def wait_answered(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        target = self.answered + count
        while self.answered < target:
            assert time.monotonic() < deadline, f"load stalled: {self.summary()}"
            self.stop.wait(0.02)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(25)


HAPROXY_CONF = """\
global
    stats socket {dir}/admin.sock mode 600 level admin
    # Server state changes (UP/DOWN) go to stderr, which the test keeps in stdout.log;
    # so does one line per failed request (dontlog-normal), which says where it failed.
    log stderr format raw local0
defaults
    mode http
    log global
    option httplog
    option dontlog-normal
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    # A refused connection (a host that stopped listening, before its health checks
    # failed) is retried (retry-on conn-failure, the default) on another server:
    # redispatch. Without it the retries go to the same host and the client gets 503.
    retries 3
    option redispatch 1
frontend site
    bind 127.0.0.1:{port}
    option forwardfor
    default_backend treadle
backend treadle
    option httpchk GET /health
    http-check expect status 200
    default-server check inter 200ms fall 2 rise 2
{servers}
"""


def start_haproxy(directory: Path, servers: dict[str, str]) -> tuple[Proxy, int]:
    """HAProxy on 127.0.0.1 balancing over ``servers`` (name -> ``ADDRESS:PORT``)."""
    assert HAPROXY is not None
    port = free_port()
    lines = "\n".join(f"    server {name} {address}" for name, address in servers.items())
    conf = directory / "haproxy.cfg"
    conf.write_text(HAPROXY_CONF.format(dir=directory, port=port, servers=lines))
    # -db: foreground, no daemon; its messages go to stdout.log.
    proxy = Proxy([HAPROXY, "-db", "-f", str(conf)], directory, directory / "stdout.log")
    try:
        proxy.wait_accepting(port)
    except BaseException:
        proxy.stop()
        raise
    return proxy, port


def haproxy_stats(directory: Path) -> dict[str, dict[str, str]]:
    """Server name -> its row of HAProxy's ``show stat`` (status, check_status, ...)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(directory / "admin.sock"))
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    rows = {}
    for line in lines[1:]:
        fields = dict(zip(header, line.split(","), strict=False))
        if fields.get("pxname") == "treadle" and fields.get("svname") not in (None, "BACKEND"):
            rows[fields["svname"]] = fields
    return rows


def haproxy_states(directory: Path) -> dict[str, str]:
    """Server name -> status (UP, DOWN, ...) from HAProxy's stats socket."""
    return {name: row["status"] for name, row in haproxy_stats(directory).items()}


def wait_haproxy_state(directory: Path, server: str, wanted: str, timeout: float = 20.0) -> None:
    """Until HAProxy reports ``server`` as ``wanted`` (UP or DOWN, after its checks).

    On a timeout the message carries HAProxy's last check result for the server and the
    end of its log (state changes, with the reason of each), so a failure says why.
    """
    deadline = time.monotonic() + timeout
    while True:
        row = haproxy_stats(directory).get(server, {})
        if row.get("status") == wanted:  # not "UP 1/2" (going down) or "DOWN 1/2" (coming up)
            return
        if time.monotonic() >= deadline:
            check = {
                key: row.get(key)
                for key in (
                    "status",
                    "check_status",
                    "check_code",
                    "check_duration",
                    "check_desc",
                    "last_chk",
                )
            }
            log = (directory / "stdout.log").read_text(errors="replace").splitlines()[-20:]
            raise AssertionError(
                f"{server} not {wanted} after {timeout} s: {check}\n" + "\n".join(log)
            )
        threading.Event().wait(0.05)  # polling HAProxy's stats: it has no event to wait on
