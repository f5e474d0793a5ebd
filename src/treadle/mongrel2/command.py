"""``treadle mongrel2``: its arguments, then load the app and serve Mongrel2's requests.

Composition layer, called by cli.py (the only module that exits). Every WSGI-side and
process-tree setting of ``treadle serve`` is taken (generated from config.py as there:
--workers, --max-requests, --reload, --pid-file ...); the listening, TLS and HTTP/2
settings are not, since Mongrel2 does the listening. It imports no pyzmq (the supervisor's
process reads the command line with it).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

from treadle.config import GROUPS
from treadle.errors import ConfigError

# The settings groups of `treadle serve` that concern the app and the process tree, not
# the listening sockets, TLS or HTTP/2 (Mongrel2 does all of that).
TAKEN_GROUPS = {
    "app", "pool", "limits", "timeouts", "logging", "reload", "workers", "process", "proxy"
}  # fmt: skip
# Left out of those: SCRIPT_NAME comes from each request's route; Mongrel2 reads the client
# (and speaks no PROXY protocol towards its handlers).
NOT_TAKEN = {
    "proxy_protocol",
    "script_name",
    "max_request_line_bytes",
    "max_header_bytes",
    "header_timeout_s",
    "keep_alive_timeout_s",
    "body_timeout_s",
    "send_timeout_s",
}
UPLOAD_TIMEOUT_S = 60.0
# What Mongrel2's handler specs look like: tcp://host:port (host a name, an address, "*"
# or [IPv6]), ipc://path, inproc://name.
_SPEC = re.compile(r"tcp://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.*_-]+):[0-9]{1,5}|(ipc|inproc)://\S+")


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where Mongrel2 is: its PUSH (send_spec) and SUB (recv_spec) sockets."""

    send_spec: str
    recv_spec: str
    send_ident: str | None = None
    upload_dir: Path | None = None
    upload_timeout_s: float = 60.0
    broker_spec: str | None = None  # take requests from `treadle mongrel2-broker` there


def default_recv_spec(send_spec: str) -> str:
    """Mongrel2's examples put recv_spec one port below send_spec (9997 -> 9996)."""
    base, sep, port = send_spec.rpartition(":")
    if not sep or not port.isdigit() or int(port) < 1:
        raise ValueError(f"cannot guess RECV_SPEC from {send_spec!r}: give it")
    return f"{base}:{int(port) - 1}"


def excluded_settings() -> list[str]:
    """The settings of `treadle serve` that `treadle mongrel2` does not offer."""
    import dataclasses

    return [
        spec.name
        for group, cls in GROUPS
        for spec in dataclasses.fields(cls)
        if group not in TAKEN_GROUPS or spec.name in NOT_TAKEN
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="the WSGI app: module:app or module.app")
    parser.add_argument(
        "send_spec",
        nargs="?",
        metavar="SEND_SPEC",
        help="Mongrel2's send_spec for this handler (it sends requests there), "
        "e.g. tcp://127.0.0.1:9997",
    )
    parser.add_argument(
        "recv_spec",
        nargs="?",
        metavar="RECV_SPEC",
        help="Mongrel2's recv_spec (it receives responses there); default: SEND_SPEC's "
        "port minus one, as in Mongrel2's examples",
    )
    parser.add_argument(
        "--send-ident", metavar="UUID", help="identity of the socket responses are sent on"
    )
    parser.add_argument(
        "--from-config",
        metavar="CONFIG_SQLITE",
        help="read the specs (and upload.temp_store) from Mongrel2's config database",
    )
    parser.add_argument(
        "--handler",
        metavar="NAME|ID",
        help="with --from-config: the handler's id, send_ident, or the path of a route to it",
    )
    parser.add_argument(
        "--broker",
        metavar="BACKEND_SPEC",
        help="take requests from `treadle mongrel2-broker` at this spec (one per free "
        "thread) instead of from Mongrel2's SEND_SPEC directly",
    )
    parser.add_argument(
        "--upload-dir",
        metavar="DIR",
        help="Mongrel2's upload.temp_store directory; async uploads are read only from "
        "there (default: from --from-config; without it, upload notices get 400)",
    )
    parser.add_argument(
        "--upload-timeout",
        metavar="SECONDS",
        type=float,
        default=UPLOAD_TIMEOUT_S,
        help="an upload whose file stops growing this long is abandoned and removed "
        f"(default: {UPLOAD_TIMEOUT_S:.0f})",
    )


def endpoints_from(namespace: argparse.Namespace) -> Endpoints:
    """The command line -> Endpoints; ConfigError when it does not add up.

    It imports no pyzmq: the supervisor's process checks the command line with it too.
    """
    from treadle.mongrel2.config_db import read_handler

    upload_dir = namespace.upload_dir
    if namespace.from_config:
        if namespace.send_spec or namespace.recv_spec:
            raise ConfigError("give SEND_SPEC or --from-config, not both")
        if not namespace.handler:
            raise ConfigError("--from-config needs --handler NAME|ID")
        spec = read_handler(namespace.from_config, namespace.handler)
        send_spec, recv_spec = spec.send_spec, spec.recv_spec
        if upload_dir is None and spec.upload_store:
            upload_dir = str(Path(spec.upload_store).parent)
    else:
        if namespace.handler:
            raise ConfigError("--handler needs --from-config")
        if not namespace.send_spec:
            raise ConfigError("give SEND_SPEC (e.g. tcp://127.0.0.1:9997) or --from-config")
        send_spec = namespace.send_spec
        try:
            recv_spec = namespace.recv_spec or default_recv_spec(send_spec)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    for endpoint in (send_spec, recv_spec, *([namespace.broker] if namespace.broker else [])):
        if _SPEC.fullmatch(endpoint) is None:
            raise ConfigError(f"not a ZeroMQ endpoint: {endpoint!r} (e.g. tcp://127.0.0.1:9997)")
    if upload_dir is not None and not Path(upload_dir).is_dir():
        raise ConfigError(f"--upload-dir: not a directory: {upload_dir}")
    if namespace.upload_timeout <= 0:
        raise ConfigError("--upload-timeout must be positive")
    return Endpoints(
        send_spec=send_spec,
        recv_spec=recv_spec,
        send_ident=namespace.send_ident,
        upload_dir=Path(upload_dir) if upload_dir else None,
        upload_timeout_s=namespace.upload_timeout,
        broker_spec=namespace.broker,
    )
