"""A TLS listener's certificates: the default context, one per SNI name, re-read on reload.

Reactor layer: pyOpenSSL contexts made by tls_certs.py, chosen per connection by OpenSSL's
server-name callback (RFC 6066 §3) through tls_names.py. ``reload()`` reads every file again
and swaps the whole set at once: handshakes after it get the new certificates, connections
already open keep theirs. It must not know about HTTP or ALPN (tls.py prepares each context).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from OpenSSL import SSL

from treadle.errors import ConfigError
from treadle.tls_certs import (
    DEFAULT_NAME,
    CertificateFiles,
    ClientCAs,
    Pair,
    cert_dir_files,
    read_client_cas,
    read_pair,
    server_context,
)
from treadle.tls_names import NameMap

Prepare = Callable[[SSL.Context], None]


@dataclass(frozen=True)
class Sources:
    """Where a TLS listener's certificates come from (read again on each reload)."""

    default: CertificateFiles | None  # an ssl: bind's files or --certfile/--keyfile
    cert_dir: str | None = None
    client_ca: str | None = None
    client_cert: str = "none"  # none, optional or required


@dataclass(frozen=True)
class CertificateSet:
    """One reading of the sources: the context every handshake starts with, and the rest."""

    front: SSL.Context
    names: NameMap[SSL.Context]
    contexts: tuple[SSL.Context, ...]


def read_set(sources: Sources) -> CertificateSet:
    """Read every file of ``sources`` into contexts; ConfigError names the first bad one."""
    clients: ClientCAs | None = None
    if sources.client_ca is not None and sources.client_cert != "none":
        clients = read_client_cas(sources.client_ca, sources.client_cert)
    dir_pairs: dict[str, Pair] = {}
    if sources.cert_dir is not None:
        dir_pairs = {
            name: read_pair(files) for name, files in cert_dir_files(sources.cert_dir).items()
        }
    if sources.default is not None:
        default = read_pair(sources.default)
    elif DEFAULT_NAME in dir_pairs:
        default = dir_pairs[DEFAULT_NAME]
    else:
        raise ConfigError(
            f"the --cert-dir {sources.cert_dir!r} has no default certificate for clients that "
            f"name no host or an unknown one: add {DEFAULT_NAME}.crt with {DEFAULT_NAME}.key "
            f"(or a {DEFAULT_NAME}/ directory, e.g. a symlink to a certbot lineage), or give "
            "--certfile"
        )
    # Every context of one set shares the session id context (tls_certs.server_context).
    session_id = os.urandom(8).hex().encode("ascii")
    # One context per certificate: a pair listed twice (certbot's default symlink) is one.
    by_certificate: dict[bytes, SSL.Context] = {}
    file_of: dict[SSL.Context, str] = {}
    names: NameMap[SSL.Context] = NameMap()
    for pair in [default, *dir_pairs.values()]:
        context = by_certificate.get(pair.fingerprint)
        if context is None:
            context = server_context(pair, clients, session_id)
            by_certificate[pair.fingerprint] = context
            file_of[context] = pair.files.certificate
        for name in pair.names:
            if not names.add(name, context):
                other = file_of[names.owner(name)]  # type: ignore[index]
                raise ConfigError(
                    f"two TLS certificates are for {name!r}: {other!r} and "
                    f"{pair.files.certificate!r}"
                )
    front = by_certificate[default.fingerprint]

    def choose(connection: SSL.Connection) -> None:
        """OpenSSL's server-name callback (reactor thread, during each handshake)."""
        server_name = connection.get_servername()
        if server_name is None:
            return  # no SNI (an IP address, an old client): the default certificate
        chosen = names.lookup(server_name.decode("ascii", "replace"))
        if chosen is not None and chosen is not front:
            connection.set_context(chosen)

    front.set_tlsext_servername_callback(choose)
    return CertificateSet(front, names, tuple(by_certificate.values()))


class Certificates:
    """The current set of a listener, and what every context of it must be given first.

    Reactor thread only (start-up, handshakes, the SIGHUP handler).
    """

    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        self.prepares: list[Prepare] = []
        self.current = read_set(sources)

    def prepare(self, prepare: Prepare) -> None:
        """Apply ``prepare`` to every context now and to those of each reload (ALPN)."""
        for context in self.current.contexts:
            prepare(context)
        self.prepares.append(prepare)

    @property
    def front(self) -> SSL.Context:
        return self.current.front

    def reload(self) -> None:
        """Read every file again and use the new set for new handshakes; on ConfigError the
        current set stays (the caller logs it)."""
        fresh = read_set(self.sources)
        for prepare in self.prepares:
            for context in fresh.contexts:
                prepare(context)
        self.current = fresh
