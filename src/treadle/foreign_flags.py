"""Flags of gunicorn and waitress-serve that treadle does not take, each with what to do instead.

Pure layer: data only, no I/O. A flag whose meaning treadle shares is not here: it is an
alias on its setting (``aliases=`` in config.py). These are the flags whose meaning differs
or that treadle has no setting for yet; cli.py makes each one fail with its advice and exit
status 2 instead of "unrecognized arguments", and docs/settings.md lists them. An entry
stops applying by itself once a setting claims its spelling (``refused_flags``), so adding
``--workers`` later is one alias on the new setting, with no edit here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

NOT_YET = "not supported yet"

# (server, spellings, advice). The advice completes "FLAG: ...".
REFUSED: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        "gunicorn",
        ("-c", "--config"),
        "config files are not supported yet: give settings as flags or TREADLE_* "
        "environment variables (see docs/settings.md)",
    ),
    (
        "gunicorn",
        ("-t", "--timeout"),
        "gunicorn's --timeout kills a silent worker process; treadle has no such kill. "
        "Use --request-timeout SECONDS to cancel a request that runs too long (504 if "
        "nothing was sent yet) and --graceful-timeout SECONDS to bound shutdown",
    ),
    (
        "gunicorn",
        ("-k", "--worker-class"),
        "treadle has one kind of worker: the Twisted reactor does all I/O and --threads N "
        "app threads run the app",
    ),
    (
        "gunicorn",
        ("--limit-request-field_size", "--limit-request-field-size"),
        "treadle limits the whole header block, not each field: use --max-header-bytes SIZE",
    ),
    (
        "gunicorn",
        ("--access-logformat",),
        "use --access-log-format; it has gunicorn's atoms h t r m U s b f a D but not the "
        "others (see docs/logging.md)",
    ),
    (
        "gunicorn",
        ("--reload-extra-file",),
        "use --reload-include GLOB (repeatable)",
    ),
    (
        "gunicorn",
        ("-D", "--daemon"),
        "treadle stays in the foreground: run it under systemd, a container or supervisord",
    ),
    ("gunicorn", ("--preload",), f"{NOT_YET}: the one process loads the app once"),
    (
        "gunicorn",
        ("--cert-reqs",),
        "use --client-cert none|optional|required (gunicorn's 0, 1, 2) with --client-ca",
    ),
    (
        "gunicorn",
        ("--ssl-version", "--ciphers"),
        "treadle negotiates TLS 1.2 or 1.3 with forward-secret AEAD cipher suites only "
        "(docs/tls.md); there is no setting to lower that",
    ),
    (
        "gunicorn",
        ("--do-handshake-on-connect", "--suppress-ragged-eofs", "--ssl-context"),
        "not needed: the reactor runs the TLS handshake (docs/tls.md)",
    ),
    (
        "gunicorn",
        ("--proxy-allow-from",),
        "with --proxy-protocol every connection must start with a PROXY header, from any "
        "peer: bind that listener where only the proxy can reach it (docs/deploy.md)",
    ),
    ("gunicorn", ("--chdir",), "change directory before starting treadle"),
    ("gunicorn", ("-e", "--env"), "set environment variables before starting treadle"),
    (
        "gunicorn",
        ("--log-config", "--log-config-dict", "--log-config-json"),
        "configure Python logging in your app (Django: settings.LOGGING); see docs/logging.md",
    ),
    (
        "waitress",
        ("--listen", "--host", "--port", "--unix-socket"),
        "use --bind HOST:PORT or --bind unix:PATH (repeatable)",
    ),
    (
        "waitress",
        ("--trusted-proxy", "--trusted-proxy-count", "--trusted-proxy-headers"),
        "use --forwarded-allow-ips IPS (addresses or CIDR networks; every proxy in the "
        "chain is listed, not counted) and --forwarded-headers x-forwarded or forwarded",
    ),
)


def refused_flags(taken: Iterable[str]) -> Iterator[tuple[str, str, str]]:
    """(server, flag, advice) for each refused spelling that no setting has claimed."""
    claimed = set(taken)
    for server, spellings, advice in REFUSED:
        for flag in spellings:
            if flag not in claimed:
                yield server, flag, advice
