"""TLS for ``ssl:`` binds: certificate files -> a server context with ALPN and TLS 1.2 minimum.

Reactor layer: Twisted's TLS machinery and pyOpenSSL only (imported by listen.py only
when an ``ssl:`` bind is used, so plain HTTP needs neither). It reads the key and
certificate files once, at start-up, and turns every problem with them into one
ConfigError line. It must not know about HTTP framing or the WSGI side.

Why not Twisted's own ``ssl:`` parser: its context answers every client that offers
ALPN (curl, browsers) with an "internal error" alert when the listening factory names no
protocols (Twisted's ALPN callback then returns an empty name, which OpenSSL rejects), it
keeps only the first certificate of a full-chain file, and its TLS floor depends on the
Twisted version. Here the server picks the protocol itself (``choose_protocol``), and each
connection (``ServerTLSConnection``) writes one record per write and closes without
waiting for the client's close_notify.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.ssl import CertificateOptions, DiffieHellmanParameters, TLSVersion
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.filepath import FilePath
from zope.interface import implementer

from treadle.errors import ConfigError

# What the server speaks after the handshake, in its order of preference (RFC 7301 §3.2:
# the server chooses): HTTP/2 first, as browsers and curl prefer it too. Which one a
# connection got is read after the handshake (http/h2_protocol.py, H2Support.wants).
ALPN_PROTOCOLS: tuple[bytes, ...] = (b"h2", b"http/1.1")

# TLS 1.0 and 1.1 are deprecated (RFC 8996); 1.2 is what Mozilla's "intermediate" profile,
# nginx and Caddy accept at the least.
MINIMUM_VERSION = TLSVersion.TLSv1_2

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)

# The parameters of an ``ssl:`` endpoint string, as Twisted names them.
KNOWN_PARAMETERS = (
    "port",
    "interface",
    "backlog",
    "privateKey",
    "certKey",
    "extraCertChain",
    "dhParameters",
)


def choose_protocol(
    offered: Sequence[bytes], supported: Sequence[bytes] = ALPN_PROTOCOLS
) -> bytes | None:
    """The server's first choice among what the client offered, or None when none fits."""
    for protocol in supported:
        if protocol in offered:
            return protocol
    return None


@dataclass(frozen=True)
class CertificateFiles:
    """Where a listener's key and certificates are; ``certificate`` may hold the chain too."""

    private_key: str
    certificate: str
    extra_chain: str | None = None
    dh_parameters: str | None = None


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read the TLS {what} {path!r}: {error.strerror}") from None


def _certificates(path: str, what: str) -> list[x509.Certificate]:
    """Every certificate in a PEM file, in file order (a leaf, then its chain)."""
    blocks = _PEM_CERTIFICATE.findall(_read(path, what))
    if not blocks:
        raise ConfigError(f"the TLS {what} {path!r} holds no PEM certificate")
    try:
        return [x509.load_pem_x509_certificate(block) for block in blocks]
    except ValueError:
        raise ConfigError(f"the TLS {what} {path!r} holds a damaged certificate") from None


def _private_key(path: str) -> Any:
    data = _read(path, "private key")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography's word for "this key is encrypted"
        raise ConfigError(
            f"the TLS private key {path!r} is encrypted: treadle needs it unencrypted "
            "(readable by the server's user only)"
        ) from None
    except ValueError:
        raise ConfigError(f"the TLS private key {path!r} holds no PEM private key") from None


def _public_der(key: Any) -> bytes:
    return bytes(
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def certificate_options(files: CertificateFiles) -> CertificateOptions:
    """Read the files and check that the key fits the certificate; ConfigError if not."""
    key = _private_key(files.private_key)
    leaf, *chain = _certificates(files.certificate, "certificate")
    if _public_der(key.public_key()) != _public_der(leaf.public_key()):
        raise ConfigError(
            f"the TLS private key {files.private_key!r} does not belong to the certificate "
            f"{files.certificate!r} (the first certificate in the file must be the server's)"
        )
    if files.extra_chain is not None:
        chain += _certificates(files.extra_chain, "certificate chain")
    dh = None
    if files.dh_parameters is not None:
        _read(files.dh_parameters, "DH parameters")
        dh = DiffieHellmanParameters.fromFile(FilePath(files.dh_parameters))
    options = CertificateOptions(
        privateKey=crypto.PKey.from_cryptography_key(key),
        certificate=crypto.X509.from_cryptography(leaf),
        extraCertChain=[crypto.X509.from_cryptography(c) for c in chain] or None,
        dhParameters=dh,
        raiseMinimumTo=MINIMUM_VERSION,
        # Resumption by ticket (RFC 8446 §2.2, RFC 5077): a returning client skips the
        # certificate signature. Keys are per process and per start, so no key file to guard.
        enableSessionTickets=True,
    )
    try:
        options.getContext()  # loads key and certificates into OpenSSL now, not per connection
    except SSL.Error as error:
        raise ConfigError(
            f"OpenSSL refused the TLS key, certificates or DH parameters of "
            f"{files.certificate!r}: {error}"
        ) from None
    return options


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """Makes each accepted connection's TLS state from one shared, prepared context."""

    def __init__(self, options: CertificateOptions, protocols: Sequence[bytes] = ALPN_PROTOCOLS):
        self.protocols = tuple(protocols)
        self.context = options.getContext()
        # Replaces the callback Twisted installed (see the module docstring).
        self.context.set_alpn_select_callback(self._select)

    def _select(self, connection: SSL.Connection, offered: list[bytes]) -> Any:
        """OpenSSL's ALPN callback (reactor thread, during the handshake)."""
        chosen = choose_protocol(offered, self.protocols)
        # Nothing in common: finish the handshake without ALPN rather than fail it. A client
        # then speaks HTTP/1.1, the default for TLS without ALPN (RFC 9113 §3.3: h2 needs it
        # negotiated), as Go's server does for a client that offers h2 only.
        return SSL.NO_OVERLAPPING_PROTOCOLS if chosen is None else chosen

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:  # noqa: N802, N803
        return SSL.Connection(self.context, None)


def ssl_endpoint(reactor: Any, args: Sequence[str], params: dict[str, str]) -> Any:
    """``ssl:PORT:privateKey=...:certKey=...`` split into args and params -> an endpoint."""
    unknown = sorted(set(params) - set(KNOWN_PARAMETERS))
    if unknown:
        raise ConfigError(
            f"ssl: bind does not take {', '.join(unknown)}; it takes {', '.join(KNOWN_PARAMETERS)}"
        )
    port_text = params.get("port", args[0] if args else "")
    if not port_text.isdigit() or len(args) > (0 if "port" in params else 1):
        raise ConfigError("ssl: bind needs one port: ssl:PORT:privateKey=KEY:certKey=CERT")
    private_key = params.get("privateKey", "server.pem")  # Twisted's default names
    files = CertificateFiles(
        private_key=private_key,
        certificate=params.get("certKey", private_key),
        extra_chain=params.get("extraCertChain"),
        dh_parameters=params.get("dhParameters"),
    )
    backlog = params.get("backlog", "50")
    if not backlog.isdigit():
        raise ConfigError(f"ssl: bind has a bad backlog {backlog!r}")
    tcp = TCP4ServerEndpoint(
        reactor, int(port_text), backlog=int(backlog), interface=params.get("interface", "")
    )
    return TLSServerEndpoint(tcp, ServerTLS(certificate_options(files)))


class TLSServerEndpoint:
    """A TCP endpoint whose connections are wrapped in TLS, one record per write.

    Twisted's own TLS endpoint buffers small writes until the next reactor turn, to make
    fewer, larger records. treadle already writes a whole response in one call and
    batches streamed ones, so that buffering only adds a loop turn per response: without
    it the server spent 10-15% less CPU per keep-alive request (docs/design/decisions.md).
    """

    def __init__(self, tcp: Any, creator: Any) -> None:  # a ServerTLS
        self.tcp = tcp
        self.creator = creator

    def listen(self, factory: Any) -> Any:
        wrapping = TLSMemoryBIOFactory(self.creator, False, factory)
        wrapping.protocol = ServerTLSConnection  # not Twisted's write-buffering subclass
        return self.tcp.listen(wrapping)


class ServerTLSConnection(TLSMemoryBIOProtocol):
    """A server's TLS connection: closing it sends close_notify, then closes the socket."""

    def loseConnection(self) -> None:  # noqa: N802 - Twisted's name
        """Close after what was written: close_notify, then TCP's close.

        Twisted's TLS transport waits for the connection's producer to unregister (the
        HTTP connection stays registered while it lives), then for the client's own
        close_notify, before it closes the socket: a client that reads to the end of a
        response delimited by the close, or idles past --keep-alive, would wait forever,
        and the server would hold the socket. RFC 8446 §6.1 lets the side that closes skip
        waiting for the peer's close_notify, as nginx does.
        """
        self.unregisterProducer()
        super().loseConnection()
        if self.transport is not None:
            # Writes what is buffered, close_notify last.
            self.transport.loseConnection()  # type: ignore[misc]
