"""TLS listeners: ``ssl:`` binds and tcp binds under --certfile/--cert-dir, with ALPN.

Reactor layer: Twisted's TLS machinery and pyOpenSSL only (imported by listen.py only
when TLS is used, so plain HTTP needs neither). The certificates (files, SNI, client
certificates, reload) are tls_sni.py's and tls_certs.py's; this module wraps a TCP
endpoint with them and chooses the protocol. It must not know about HTTP framing or
the WSGI side.

Why not Twisted's own ``ssl:`` parser: its context answers every client that offers
ALPN (curl, browsers) with an "internal error" alert when the listening factory names no
protocols (Twisted's ALPN callback then returns an empty name, which OpenSSL rejects), it
keeps only the first certificate of a full-chain file, and its TLS floor depends on the
Twisted version. Here the server picks the protocol itself (``choose_protocol``), and each
connection (``ServerTLSConnection``) writes one record per write and closes without
waiting for the client's close_notify.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from OpenSSL import SSL
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from zope.interface import implementer

from treadle.config import TLS
from treadle.errors import ConfigError
from treadle.tls_certs import CertificateFiles
from treadle.tls_environ import connection_environ
from treadle.tls_sni import Certificates, Sources

# What the server speaks after the handshake, in its order of preference (RFC 7301 §3.2:
# the server chooses): HTTP/2 first, as browsers and curl prefer it too. Which one a
# connection got is read after the handshake (http/h2_protocol.py, H2Support.wants).
ALPN_PROTOCOLS: tuple[bytes, ...] = (b"h2", b"http/1.1")

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


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """Makes each accepted connection's TLS state from one shared, prepared context."""

    def __init__(self, certificates: Certificates, protocols: Sequence[bytes] = ALPN_PROTOCOLS):
        self.protocols = tuple(protocols)
        self.certificates = certificates
        # Replaces the callback Twisted installed (see the module docstring), on every context
        # of the listener (one per SNI certificate) and of each reload (tls_sni.py).
        certificates.prepare(lambda context: context.set_alpn_select_callback(self._select))

    def _select(self, connection: SSL.Connection, offered: list[bytes]) -> Any:
        """OpenSSL's ALPN callback (reactor thread, during the handshake)."""
        chosen = choose_protocol(offered, self.protocols)
        # Nothing in common: finish the handshake without ALPN rather than fail it. A client
        # then speaks HTTP/1.1, the default for TLS without ALPN (RFC 9113 §3.3: h2 needs it
        # negotiated), as Go's server does for a client that offers h2 only.
        return SSL.NO_OVERLAPPING_PROTOCOLS if chosen is None else chosen

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:  # noqa: N802, N803
        # The current set's default context; the server-name callback may switch it.
        return SSL.Connection(self.certificates.front, None)


def sources(default: CertificateFiles | None, settings: TLS | None) -> Sources:
    """A listener's certificate sources: its own files plus the --cert-dir and --client-*."""
    if settings is None:
        return Sources(default)
    return Sources(default, settings.cert_dir, settings.client_ca, settings.client_cert)


def ssl_endpoint(
    reactor: Any, args: Sequence[str], params: dict[str, str], settings: TLS | None = None
) -> Any:
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
    return TLSServerEndpoint(tcp, ServerTLS(Certificates(sources(files, settings))))


def settings_endpoint(plain: Any, settings: TLS) -> Any:
    """A tcp bind made TLS by --certfile/--keyfile or --cert-dir (gunicorn's shorthands)."""
    default = None
    if settings.certfile is not None:
        default = CertificateFiles(
            private_key=settings.keyfile or settings.certfile, certificate=settings.certfile
        )
    return TLSServerEndpoint(plain, ServerTLS(Certificates(sources(default, settings))))


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

    def reload(self) -> None:
        """Re-read the certificate files: new handshakes get them, open connections keep
        theirs. Reactor thread; ConfigError (the old certificates stay) if one is bad."""
        self.creator.certificates.reload()

    def listen(self, factory: Any) -> Any:
        wrapping = TLSMemoryBIOFactory(self.creator, False, factory)
        wrapping.protocol = ServerTLSConnection  # not Twisted's write-buffering subclass
        return self.tcp.listen(wrapping)


class ServerTLSConnection(TLSMemoryBIOProtocol):
    """A server's TLS connection: closing it sends close_notify, then closes the socket."""

    def tls_environ(self) -> dict[str, str]:
        """The SSL_* environ keys of this connection (tls_environ.py); reactor thread, once
        the handshake is over (the first request has arrived)."""
        return connection_environ(self.getHandle())

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
