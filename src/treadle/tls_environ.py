"""What a TLS connection tells the app: Apache mod_ssl's SSL_* environ names, once per connection.

Reactor layer: reads a finished handshake's pyOpenSSL connection (protocol, cipher, server
name, the client's verified certificate) into native strings for the WSGI environ
(docs/tls.md lists them). Called by the TLS transport (tls.py) when the first request of a
connection arrives, after the handshake. It must not change the connection.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL


def _native(text: str) -> str:
    """PEP 3333: environ values are latin-1 "bytes as str"; mod_ssl hands over UTF-8."""
    return text.encode("utf-8").decode("latin-1")


def _mod_ssl_time(moment: datetime.datetime) -> str:
    # mod_ssl's SSL_CLIENT_V_START/V_END format (ASN1_TIME_print): "Nov 30 23:05:45 2026 GMT".
    return moment.strftime("%b %e %H:%M:%S %Y GMT")


def _validity(certificate: x509.Certificate) -> tuple[datetime.datetime, datetime.datetime]:
    # The *_utc properties exist from cryptography 42; the naive ones warn there.
    if hasattr(certificate, "not_valid_before_utc"):
        return certificate.not_valid_before_utc, certificate.not_valid_after_utc
    return certificate.not_valid_before, certificate.not_valid_after  # naive UTC, before 42


def client_certificate_environ(certificate: x509.Certificate) -> dict[str, str]:
    """SSL_CLIENT_* for a certificate OpenSSL verified against --client-ca."""
    valid_from, valid_until = _validity(certificate)
    return {
        "SSL_CLIENT_VERIFY": "SUCCESS",
        # RFC 4514 order and escaping, as mod_ssl gives without LegacyDNStringFormat.
        "SSL_CLIENT_S_DN": _native(certificate.subject.rfc4514_string()),
        "SSL_CLIENT_I_DN": _native(certificate.issuer.rfc4514_string()),
        "SSL_CLIENT_M_SERIAL": f"{certificate.serial_number:X}",
        "SSL_CLIENT_V_START": _mod_ssl_time(valid_from),
        "SSL_CLIENT_V_END": _mod_ssl_time(valid_until),
        "SSL_CLIENT_CERT": certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
    }


def connection_environ(connection: SSL.Connection) -> dict[str, str]:
    """HTTPS, SSL_PROTOCOL, SSL_CIPHER, SSL_TLS_SNI and, with a client certificate,
    SSL_CLIENT_*. The handshake is over: the peer's certificate is there only when the
    server asked for it (--client-cert) and OpenSSL verified its chain, else the
    handshake would have failed."""
    environ = {
        "HTTPS": "on",  # the CGI convention (wsgiref.util.guess_scheme reads it)
        "SSL_PROTOCOL": connection.get_protocol_version_name(),
        "SSL_CIPHER": connection.get_cipher_name() or "",
    }
    server_name = connection.get_servername()
    if server_name:
        environ["SSL_TLS_SNI"] = server_name.decode("ascii", "replace")
    # as_cryptography= exists from pyOpenSSL 24.3 only; to_cryptography() on every version.
    peer = connection.get_peer_certificate()
    if peer is not None:
        environ.update(client_certificate_environ(peer.to_cryptography()))
    return environ
