"""Every treadle setting, defined once.

Pure layer: frozen dataclasses and value parsing, no I/O. Each field's metadata
carries its help text, CLI flag and ``TREADLE_*`` environment variable; the CLI
parser (cli.py) and docs/settings.md are generated from these definitions, so a
setting is never written out twice. Nothing here imports an app or binds a socket.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from treadle.errors import ConfigError

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


def parse_bytes(text: str) -> int:
    """``"16K"``, ``"1M"``, ``"1G"`` or a plain integer -> a number of bytes."""
    text = text.strip()
    units = {"k": KIB, "m": MIB, "g": GIB}
    scale = units.get(text[-1:].lower(), 1)
    digits = text[:-1] if scale != 1 else text
    try:
        value = int(digits)
    except ValueError:
        raise ConfigError(f"not a size: {text!r} (use e.g. 8192, 16K, 1M, 1G)") from None
    if value < 0:
        raise ConfigError(f"size must not be negative: {text!r}")
    return value * scale


def parse_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"not a number of seconds: {text!r}") from None
    if value < 0:
        raise ConfigError(f"seconds must not be negative: {text!r}")
    return value


def parse_optional_seconds(text: str) -> float | None:
    if text.strip().lower() in ("", "none", "off", "0"):
        return None
    return parse_seconds(text)


def parse_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise ConfigError(f"must not be negative: {text!r}")
    return value


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"not a boolean: {text!r}")


def parse_optional_str(text: str) -> str | None:
    return text or None


def parse_umask(text: str) -> int | None:
    """Octal, as umask(1) and gunicorn take it (022, 0o027); empty for none."""
    if text in ("", "-"):
        return None
    try:
        value = int(text.removeprefix("0o"), 8)
    except ValueError:
        raise ConfigError(f"not an octal umask: {text!r}") from None
    if not 0 <= value <= 0o777:
        raise ConfigError(f"umask out of range: {text!r}")
    return value


def parse_log_file(text: str) -> str | None:
    """A path, or None for stderr: "-" means stderr, as for gunicorn's --error-logfile."""
    return None if text in ("", "-") else text


def setting(
    default: Any,
    help: str,
    *,
    parse: Callable[[str], Any] = str,
    flag: str | None = None,
    metavar: str | None = None,
    repeat: bool = False,
    choices: tuple[str, ...] | None = None,
    why: str = "",
    aliases: tuple[str, ...] = (),
    shown_default: str | None = None,
    env_aliases: tuple[str, ...] = (),
) -> Any:
    """A dataclass field for one setting. ``why`` says where the default comes from.

    ``aliases`` are other spellings of the flag with the same meaning (gunicorn's ``-b``
    for --bind); they are accepted on the command line and listed in docs/settings.md.
    ``shown_default`` replaces the default's value in --help and the docs where the raw
    value says nothing (None meaning "stderr"). ``env_aliases`` are environment
    variables read when the ``TREADLE_*`` one is unset (gunicorn's FORWARDED_ALLOW_IPS).
    """
    meta = {
        "help": help,
        "parse": parse,
        "flag": flag,
        "metavar": metavar,
        "repeat": repeat,
        "choices": choices,
        "why": why,
        "aliases": tuple(aliases),
        "shown_default": shown_default,
        "env_aliases": tuple(env_aliases),
    }
    if isinstance(default, list | dict | set):
        raise TypeError("use a tuple for repeatable settings")
    return field(default=default, metadata=meta)


@dataclass(frozen=True, slots=True)
class Listen:
    bind: tuple[str, ...] = setting(
        ("tcp:8000:interface=127.0.0.1",),
        "Where to listen: a Twisted endpoint string (tcp:8000:interface=0.0.0.0, tcp6:8000, "
        "unix:/run/app.sock:mode=660, ssl:..., systemd:domain=INET:index=0) or the "
        "shorthands HOST:PORT and unix:PATH. Repeatable.",
        repeat=True,
        metavar="ENDPOINT",
        aliases=("-b",),
    )
    backlog: int = setting(
        2048,
        "Connections the kernel may queue before treadle accepts them (tcp and unix binds "
        "that do not set backlog= themselves).",
        parse=parse_count,
        why="gunicorn's default; Twisted's own is 50, too few for a burst of clients",
    )
    max_connections: int = setting(
        0,
        "Most client connections open at once. At the limit treadle stops accepting: new "
        "clients wait in the kernel's backlog until a connection closes. 0 picks 10000, or "
        "half the open-file limit when that is lower (each connection may also hold a file "
        "or a spooled body).",
        parse=parse_count,
        aliases=("--connection-limit", "--worker-connections"),
        shown_default="0 (auto)",
        why="waitress's connection_limit and gunicorn's worker_connections stop accepting too",
    )


@dataclass(frozen=True, slots=True)
class App:
    factory: bool = setting(
        False,
        "Call the target with no arguments to get the WSGI app.",
        parse=parse_bool,
        aliases=("--call",),
    )
    script_name: str = setting(
        "",
        "Mount the app under this URL prefix (sets SCRIPT_NAME; requests outside it get 404).",
        metavar="/PREFIX",
        aliases=("--url-prefix",),
    )
    multiprocess: bool = setting(
        False,
        "Value of wsgi.multiprocess (set by the supervisor when it runs several workers).",
        parse=parse_bool,
    )
    static: tuple[str, ...] = setting(
        (),
        "Serve a directory from the reactor: /url/prefix=/path/to/dir. Repeatable.",
        repeat=True,
        metavar="/URL=DIR",
    )


@dataclass(frozen=True, slots=True)
class Pool:
    threads: int = setting(
        16, "Threads that run the app.", parse=parse_count, why="gunicorn gthread users run 8-32"
    )
    max_queue: int = setting(
        1024,
        "Requests that may wait for a free thread; beyond it treadle answers 503 with "
        "Retry-After at once, without touching a thread.",
        parse=parse_count,
        why="holds a burst from 1000 clients; about a second of work at typical Django rates",
    )
    idle_spin_us: int = setting(
        0,
        "Longest time, in microseconds, the reactor keeps polling after traffic, while no request "
        "is running, before it sleeps: a client's next request then finds it awake. The "
        "window shrinks to nothing while traffic is sparse; 0 turns it off. Opt in (50 is a "
        "good start) where waking a halted core is slow, as on many VMs: it spends CPU.",
        parse=parse_count,
        flag="--idle-spin-us",
        why="off, as HAProxy's busy-polling: a spin costs CPU per request, billed under quotas",
    )
    gc_threshold: int = setting(
        20000,
        "Allocations (net of frees) between two young-generation runs of Python's cyclic "
        "garbage collector, set when treadle owns the process (treadle serve, manage.py "
        "server), not when it is embedded as a Twisted service; 0 keeps the interpreter's "
        "own. Requests waiting for a thread are alive, not garbage: at the interpreter's "
        "700 a burst of a few dozen requests starts a collection that finds nothing.",
        parse=parse_count,
        flag="--gc-threshold",
        why="a full queue (1024 requests, ~15 tracked objects each) fits below it; "
        "measured +9% requests/s at 1000 connections, GC time from 10% of the core to ~0",
    )


@dataclass(frozen=True, slots=True)
class Limits:
    max_request_line_bytes: int = setting(
        8 * KIB,
        "Longest request line; longer gets 414.",
        parse=parse_bytes,
        flag="--max-request-line",
        why="RFC 9112 §3 recommends at least 8000 octets; nginx, gunicorn use 8K",
        aliases=("--limit-request-line",),
    )
    max_header_count: int = setting(
        100,
        "Most header fields in a request; more gets 431.",
        parse=parse_count,
        flag="--max-header-count",
        why="gunicorn's limit_request_fields",
        aliases=("--limit-request-fields",),
    )
    max_header_bytes: int = setting(
        16 * KIB,
        "Largest header block; larger gets 431.",
        parse=parse_bytes,
        flag="--max-header-bytes",
        why="h11, node and Tomcat allow 16 KiB",
        aliases=("--max-request-header-size",),
    )
    max_body_bytes: int = setting(
        100 * MIB,
        "Largest request body; larger gets 413 before it is read.",
        parse=parse_bytes,
        flag="--max-body",
        why="Cloudflare's upload ceiling; far above forms, which Django keeps in memory up to "
        "2.5 MB, and below waitress's 1 GiB, as every waiting body may sit on disk",
        aliases=("--max-request-body-size",),
    )
    spool_threshold_bytes: int = setting(
        MIB,
        "Request bodies larger than this are spooled to a temporary file.",
        parse=parse_bytes,
        flag="--spool-threshold",
        why="waitress spools past 512 KiB; 1 MiB keeps typical form posts in memory",
    )


@dataclass(frozen=True, slots=True)
class Timeouts:
    header_timeout_s: float = setting(
        20.0,
        "Deadline for a whole request head, from its first byte (slowloris guard); 408 after.",
        parse=parse_seconds,
        flag="--header-timeout",
        why="Apache mod_reqtimeout's header=20-40",
    )
    keep_alive_timeout_s: float = setting(
        5.0,
        "Close a kept-alive connection idle this long.",
        parse=parse_seconds,
        flag="--keep-alive",
        why="uvicorn's 5 s; above most load balancers' reuse window",
    )
    body_timeout_s: float = setting(
        60.0,
        "Longest wait for more request body bytes; 408 after.",
        parse=parse_seconds,
        flag="--body-timeout",
        why="nginx's client_body_timeout",
    )
    send_timeout_s: float = setting(
        60.0,
        "Drop a connection whose client has taken none of the response for this long while "
        "treadle's send buffer for it is full (a client that stopped reading).",
        parse=parse_seconds,
        flag="--send-timeout",
        why="nginx's send_timeout: the time between two successful writes",
    )
    graceful_timeout_s: float = setting(
        30.0,
        "On SIGTERM/SIGINT, how long in-flight requests may finish before exit.",
        parse=parse_seconds,
        flag="--graceful-timeout",
        why="gunicorn's graceful_timeout",
    )
    request_timeout_s: float | None = setting(
        None,
        "Cancel a request whose app runs longer than this (504 if nothing was sent yet). "
        "Time waiting for a slow client to take the response, and files sent by the "
        "reactor, do not count (--send-timeout covers the client).",
        parse=parse_optional_seconds,
        flag="--request-timeout",
    )
    hard_cancel_after_s: float | None = setting(
        None,
        "Last resort: raise RequestCancelled inside a thread that ignores cancellation "
        "this long (cannot interrupt C calls).",
        parse=parse_optional_seconds,
        flag="--hard-cancel-after",
    )


@dataclass(frozen=True, slots=True)
class Logging:
    access_log: str | None = setting(
        None,
        "Write an access log (combined format plus duration in microseconds) to PATH, "
        "or - for stderr.",
        parse=parse_optional_str,
        metavar="-|PATH",
        aliases=("--access-logfile",),
    )
    access_log_format: str | None = setting(
        None,
        "Access log format with %(atom)s atoms (see docs/logging.md).",
        parse=parse_optional_str,
        metavar="FORMAT",
        shown_default="combined log format plus duration",
    )
    log_level: str = setting(
        "info",
        "Level of treadle's own log messages.",
        choices=("critical", "error", "warning", "info", "debug"),
    )
    log_file: str | None = setting(
        None,
        "Send treadle's own messages to this file instead of stderr (- means stderr).",
        parse=parse_log_file,
        metavar="-|PATH",
        aliases=("--error-logfile",),
        shown_default="stderr",
    )


@dataclass(frozen=True, slots=True)
class Reload:
    reload: bool = setting(
        False,
        "Development: restart the worker process when a source file changes.",
        parse=parse_bool,
    )
    reload_include: tuple[str, ...] = setting(
        (),
        "Extra glob of files whose change triggers a reload. Repeatable.",
        repeat=True,
        metavar="GLOB",
    )


@dataclass(frozen=True, slots=True)
class Workers:
    workers: int = setting(
        1,
        "Worker processes. 1 serves from this process; more starts a supervisor that holds "
        "the listening sockets, runs N workers on them, replaces any that dies and reloads "
        "them on SIGHUP without dropping a request (docs/deploy.md).",
        parse=parse_count,
        aliases=("-w",),
        why="one process is what treadle always did; gunicorn's default is 1 too",
    )
    max_requests: int = setting(
        0,
        "Replace a worker once it has served this many requests (0: never). Its replacement "
        "is ready before it stops accepting; with --workers 1 this starts the supervisor.",
        parse=parse_count,
        why="gunicorn's default: off",
    )
    max_requests_jitter: int = setting(
        0,
        "Add a random 0..J to each worker's --max-requests, so workers do not recycle together.",
        parse=parse_count,
        metavar="J",
    )
    heartbeat_timeout_s: float = setting(
        30.0,
        "Under the supervisor, kill and replace a worker whose reactor has not reported for "
        "this long (its threads' stacks are logged first); 0 turns it off. Unlike gunicorn's "
        "--timeout, a long request does not count: only a stuck reactor does.",
        parse=parse_seconds,
        flag="--heartbeat-timeout",
        why="gunicorn's --timeout default",
    )
    worker_start_timeout_s: float = setting(
        60.0,
        "Under the supervisor, kill a worker that has not reported ready this long after it "
        "was started (its threads' stacks are logged first) and count it as a failed start: "
        "it is replaced with the usual backoff. 0 turns it off.",
        parse=parse_seconds,
        flag="--worker-start-timeout",
        why="gunicorn's --timeout (30 s) covers a worker's boot too; twice that, for apps "
        "that import a lot at start",
    )


@dataclass(frozen=True, slots=True)
class Process:
    pid_file: str | None = setting(
        None,
        "Write the server's pid (the supervisor's, with --workers) to PATH once it listens, "
        "and remove it at exit. treadle refuses to start while PATH names a running process.",
        parse=parse_optional_str,
        metavar="PATH",
        aliases=("-p", "--pid"),
    )
    user: str | None = setting(
        None,
        "Once listening (so ports below 1024 can be bound as root), switch to this user "
        "(name or uid) before the app is imported or any worker starts.",
        parse=parse_optional_str,
        metavar="USER",
        aliases=("-u",),
        shown_default="the user that started treadle",
    )
    group: str | None = setting(
        None,
        "With --user, switch to this group (name or gid) instead of the user's own.",
        parse=parse_optional_str,
        metavar="GROUP",
        aliases=("-g",),
        shown_default="the --user's group",
    )
    umask: int | None = setting(
        None,
        "Set this umask (octal) at start: files treadle creates, and unix sockets bound "
        "without mode=, get their mode from it (0666 minus the umask).",
        parse=parse_umask,
        metavar="OCTAL",
        aliases=("-m",),
        shown_default="inherited",
    )


CLIENT_CERT_MODES = ("none", "optional", "required")


@dataclass(frozen=True, slots=True)
class TLS:
    certfile: str | None = setting(
        None,
        "Serve TLS on every tcp bind (as gunicorn does) with this PEM certificate; the chain "
        "may follow it in the file (certbot's fullchain.pem). The key is --keyfile, else "
        "this file. Re-read on SIGHUP (docs/tls.md).",
        parse=parse_optional_str,
        metavar="PATH",
    )
    keyfile: str | None = setting(
        None,
        "The unencrypted PEM private key of --certfile.",
        parse=parse_optional_str,
        metavar="PATH",
        shown_default="the --certfile",
    )
    cert_dir: str | None = setting(
        None,
        "SNI: a directory of certificate/key pairs (NAME.crt with NAME.key, or certbot's "
        "NAME/fullchain.pem with NAME/privkey.pem); each connection gets the pair whose "
        "certificate names the host the client asked for (wildcards too), else the default "
        "pair (--certfile, or the one named default). Turns every tcp bind into TLS.",
        parse=parse_optional_str,
        metavar="DIR",
    )
    client_ca: str | None = setting(
        None,
        "PEM file of the CA certificates that client certificates must chain to "
        "(with --client-cert optional or required).",
        parse=parse_optional_str,
        metavar="PATH",
        aliases=("--ca-certs",),
    )
    client_cert: str = setting(
        "none",
        "Ask TLS clients for a certificate: none; optional (a client without one is served, "
        "one with a bad one is refused); required (the handshake fails without one). The "
        "verified subject and certificate reach the app as SSL_CLIENT_S_DN and "
        "SSL_CLIENT_CERT (docs/tls.md).",
        choices=CLIENT_CERT_MODES,
        metavar="none|optional|required",
    )

    @property
    def enabled(self) -> bool:
        """Do tcp binds serve TLS (--certfile or --cert-dir)?"""
        return self.certfile is not None or self.cert_dir is not None


def parse_allow_ips(text: str) -> str:
    """``--forwarded-allow-ips``: checked now (a bad entry fails at start), kept as text."""
    from treadle.http.forwarded import parse_allow_ips as check

    check(text)
    return ",".join(entry.strip() for entry in text.split(",") if entry.strip())


@dataclass(frozen=True, slots=True)
class Proxy:
    forwarded_allow_ips: str = setting(
        "127.0.0.1,::1",
        "Peers whose proxy headers are believed: comma-separated IP addresses and CIDR "
        "networks, or * for any. From them, X-Forwarded-For (the right-most address that is "
        "not itself one of these proxies) sets REMOTE_ADDR and X-Forwarded-Proto sets "
        "wsgi.url_scheme; from anyone else the headers reach the app untouched and change "
        "nothing. A unix socket's peer is always trusted. Empty turns this off "
        "(docs/deploy.md, Behind a proxy).",
        parse=parse_allow_ips,
        metavar="IPS",
        env_aliases=("FORWARDED_ALLOW_IPS",),
        why="gunicorn's (older releases: 127.0.0.1 only); uvicorn trusts 127.0.0.1 too: a proxy "
        "on the same host works without a setting",
    )
    forwarded_headers: str = setting(
        "x-forwarded",
        "Which proxy headers the --forwarded-allow-ips peers send: x-forwarded "
        "(X-Forwarded-For and X-Forwarded-Proto: nginx, HAProxy's option forwardfor, most "
        "balancers) or forwarded (RFC 7239 Forwarded: for= and proto=). Only one kind is "
        "read, so a client cannot pass the other kind through a proxy that does not set it.",
        choices=("x-forwarded", "forwarded"),
        metavar="x-forwarded|forwarded",
    )
    proxy_protocol: bool = setting(
        False,
        "Every connection starts with a PROXY protocol header (v1 or v2, HAProxy's send-proxy "
        "and send-proxy-v2): its source address becomes REMOTE_ADDR. A connection without a "
        "valid header is closed with one log line. Before TLS on ssl: binds. Only for "
        "listeners that nothing but the proxy can reach.",
        parse=parse_bool,
        why="gunicorn's --proxy-protocol is off by default too",
    )


@dataclass(frozen=True, slots=True)
class HTTP2:
    h2c: bool = setting(
        False,
        "Speak HTTP/2 without TLS (h2c) too: to clients that start with the HTTP/2 preface "
        "(prior knowledge) and to a first request with Upgrade: h2c. Over TLS, HTTP/2 is "
        "always offered by ALPN.",
        parse=parse_bool,
        why="h2c is for trusted networks (behind a proxy); nginx and Go leave it off too",
    )
    h2_max_concurrent_streams: int = setting(
        100,
        "Most HTTP/2 streams (requests) a client may have open at once on one connection "
        "(SETTINGS_MAX_CONCURRENT_STREAMS); a client that opens more is closed with GOAWAY.",
        parse=parse_count,
        why="RFC 9113 §6.5.2 recommends no fewer than 100; nginx uses 128, h2o 100",
    )
    h2_max_header_list_size: int = setting(
        64 * KIB,
        "Largest HTTP/2 header list a client may send, decoded (SETTINGS_MAX_HEADER_LIST_SIZE); "
        "a larger one closes the connection with GOAWAY. The request limits "
        "(--max-header-bytes, 431) apply too.",
        parse=parse_bytes,
        why="h2's own default; bounds HPACK bombs and CONTINUATION floods",
    )


GROUPS: tuple[tuple[str, type], ...] = (
    ("listen", Listen),
    ("app", App),
    ("pool", Pool),
    ("limits", Limits),
    ("timeouts", Timeouts),
    ("logging", Logging),
    ("reload", Reload),
    ("workers", Workers),
    ("process", Process),
    ("proxy", Proxy),
    ("tls", TLS),
    ("http2", HTTP2),
)


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration: one frozen value handed to the composition root."""

    listen: Listen = field(default_factory=Listen)
    app: App = field(default_factory=App)
    pool: Pool = field(default_factory=Pool)
    limits: Limits = field(default_factory=Limits)
    timeouts: Timeouts = field(default_factory=Timeouts)
    logging: Logging = field(default_factory=Logging)
    reload: Reload = field(default_factory=Reload)
    workers: Workers = field(default_factory=Workers)
    process: Process = field(default_factory=Process)
    proxy: Proxy = field(default_factory=Proxy)
    tls: TLS = field(default_factory=TLS)
    http2: HTTP2 = field(default_factory=HTTP2)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Config:
        """Build from flat setting names (``threads=8, bind=[...]``); unknown names fail."""
        known = {spec.name: group for group, spec in iter_settings()}
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        grouped: dict[str, dict[str, Any]] = {name: {} for name, _ in GROUPS}
        for name, value in settings.items():
            if isinstance(value, list):
                value = tuple(value)
            grouped[known[name]][name] = value
        parts = {name: group_cls(**grouped[name]) for name, group_cls in GROUPS}
        config = cls(**parts)
        config.validate()
        return config

    def replace(self, **settings: Any) -> Config:
        """A copy with some flat settings changed."""
        return Config.from_settings({**self.flat(), **settings})

    def flat(self) -> dict[str, Any]:
        return {
            spec.name: getattr(getattr(self, group), spec.name) for group, spec in iter_settings()
        }

    def supervised(self) -> bool:
        """Does ``treadle serve`` start the supervisor (several workers, or recycling)?"""
        return self.workers.workers > 1 or self.workers.max_requests > 0

    def validate(self) -> None:
        if self.pool.threads < 1:
            raise ConfigError("threads must be at least 1")
        if self.workers.workers < 1:
            raise ConfigError("--workers must be at least 1")
        if self.reload.reload and self.supervised():
            raise ConfigError("--reload runs one worker: leave out --workers and --max-requests")
        process = self.process
        if self.reload.reload and (process.pid_file or process.user or process.group
                                   or process.umask is not None):  # fmt: skip
            raise ConfigError(
                "--pid-file, --user, --group and --umask are for production; the development "
                "reloader applies none of them: leave them out, or turn reload off"
            )
        self._validate_tls()
        parse_allow_ips(self.proxy.forwarded_allow_ips)  # from Django or serve(): unparsed
        if not self.listen.bind:
            raise ConfigError("at least one --bind is needed")
        prefix = self.app.script_name
        if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
            raise ConfigError(f"script_name must start with / and not end with /: {prefix!r}")
        for mount in self.app.static:
            if "=" not in mount or not mount.startswith("/"):
                raise ConfigError(f"static mount must look like /url=DIR: {mount!r}")
        for name, value in (
            ("--max-request-line", self.limits.max_request_line_bytes),
            ("--max-header-count", self.limits.max_header_count),
            ("--max-header-bytes", self.limits.max_header_bytes),
            ("--h2-max-concurrent-streams", self.http2.h2_max_concurrent_streams),
            ("--h2-max-header-list-size", self.http2.h2_max_header_list_size),
        ):
            # gunicorn's --limit-request-line 0 means "no limit": never map it to "refuse all".
            if value < 1:
                raise ConfigError(f"{name} must be at least 1 (treadle has no unlimited setting)")

    def _validate_tls(self) -> None:
        tls = self.tls
        if tls.keyfile is not None and tls.certfile is None:
            raise ConfigError("--keyfile needs --certfile (the certificate it belongs to)")
        if tls.client_cert != "none" and tls.client_ca is None:
            raise ConfigError(
                f"--client-cert {tls.client_cert} needs --client-ca (the CAs to verify with)"
            )
        if tls.client_ca is not None and tls.client_cert == "none":
            raise ConfigError("--client-ca (--ca-certs) needs --client-cert optional or required")


def iter_settings() -> Iterator[tuple[str, dataclasses.Field[Any]]]:
    """(group name, field) for every setting, in definition order."""
    for group_name, group_cls in GROUPS:
        for spec in dataclasses.fields(group_cls):
            yield group_name, spec


def flag_of(spec: dataclasses.Field[Any]) -> str:
    return str(spec.metadata["flag"] or "--" + spec.name.replace("_", "-"))


def aliases_of(spec: dataclasses.Field[Any]) -> tuple[str, ...]:
    """Other spellings of the flag with the same meaning (gunicorn's, waitress's)."""
    return tuple(spec.metadata.get("aliases", ()))


def env_of(spec: dataclasses.Field[Any]) -> str:
    return "TREADLE_" + flag_of(spec)[2:].replace("-", "_").upper()


def parse_value(spec: dataclasses.Field[Any], text: str) -> Any:
    """Parse one textual value (from argv or the environment) for ``spec``."""
    choices = spec.metadata["choices"]
    if choices:
        text = text.strip().lower()  # --log-level DEBUG, as gunicorn and Django accept
        if text not in choices:
            raise ConfigError(f"{flag_of(spec)} must be one of {', '.join(choices)}: {text!r}")
    return spec.metadata["parse"](text)


def settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Flat settings read from ``TREADLE_*`` variables; repeatable ones split on commas."""
    environ = os.environ if environ is None else environ
    found: dict[str, Any] = {}
    for _, spec in iter_settings():
        variable = env_of(spec)
        text = environ.get(variable)
        for alias in spec.metadata.get("env_aliases", ()):
            if text is not None:
                break
            variable, text = alias, environ.get(alias)
        if text is None:
            continue
        try:
            if spec.metadata["repeat"]:
                found[spec.name] = tuple(parse_value(spec, t) for t in text.split(",") if t)
            else:
                found[spec.name] = parse_value(spec, text)
        except ConfigError as error:
            raise ConfigError(f"{variable}: {error}") from None
    return found


if __name__ == "__main__":
    # The old spelling of the docs command; the renderer lives in settings_doc.py.
    from treadle.settings_doc import render_settings_markdown

    print(render_settings_markdown(), end="")
