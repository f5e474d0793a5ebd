"""Certificate files -> checked key/certificate pairs -> OpenSSL server contexts.

Reactor layer: pyOpenSSL, cryptography and Twisted's CertificateOptions, no sockets. It
reads every file a TLS listener uses (an ``ssl:`` bind's key and certificates,
--certfile/--keyfile, each pair of --cert-dir, --client-ca), at start-up and on reload, and
turns every problem with them into one ConfigError line naming the file. It must not know
about HTTP, ALPN or server names (tls.py and tls_sni.py build on it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto
from twisted.internet.ssl import (
    AcceptableCiphers,
    CertificateOptions,
    DiffieHellmanParameters,
    TLSVersion,
)
from twisted.python.filepath import FilePath

from treadle.errors import ConfigError

# TLS 1.0 and 1.1 are deprecated (RFC 8996); 1.2 is what Mozilla's "intermediate" profile,
# nginx and Caddy accept at the least.
MINIMUM_VERSION = TLSVersion.TLSv1_2

# TLS 1.2 suites: Mozilla's "intermediate" profile (v5.7), forward-secret AEAD only. Twisted's
# default also allows RSA key exchange and CBC suites, which that profile and RFC 9113
# §9.2.2 (HTTP/2's cipher blocklist) rule out. TLS 1.3 suites are all AEAD: OpenSSL's own.
MODERN_CIPHERS = AcceptableCiphers.fromOpenSSLCipherString(
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)

# What OpenSSL asks of the client under --client-cert (RFC 8446 §4.3.2, RFC 5246 §7.4.4).
VERIFY_MODES = {
    "optional": SSL.VERIFY_PEER | SSL.VERIFY_CLIENT_ONCE,
    "required": SSL.VERIFY_PEER | SSL.VERIFY_CLIENT_ONCE | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
}


@dataclass(frozen=True)
class CertificateFiles:
    """Where a listener's key and certificates are; ``certificate`` may hold the chain too."""

    private_key: str
    certificate: str
    extra_chain: str | None = None
    dh_parameters: str | None = None


@dataclass(frozen=True)
class Pair:
    """A key and the certificates it belongs to, read and checked."""

    files: CertificateFiles
    key: Any  # a cryptography private key
    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    dh: DiffieHellmanParameters | None

    @property
    def names(self) -> tuple[str, ...]:
        """The DNS names the certificate is for: its subjectAltName's, else its CN (RFC 6125
        §6.4.4 lets clients fall back to the CN only when there is no DNS name)."""
        try:
            san = self.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            names = san.value.get_values_for_type(x509.DNSName)
        except x509.ExtensionNotFound:
            names = []
        if not names:
            names = [
                str(attribute.value)
                for attribute in self.leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            ]
        return tuple(names)

    @property
    def fingerprint(self) -> bytes:
        return self.leaf.fingerprint(hashes.SHA256())


@dataclass(frozen=True)
class ClientCAs:
    """--client-ca read: the CAs a client certificate must chain to, and how to ask."""

    mode: str  # "optional" or "required"
    authorities: tuple[x509.Certificate, ...]


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read the TLS {what} {path!r}: {error.strerror}") from None


def read_certificates(path: str, what: str) -> list[x509.Certificate]:
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


def read_pair(files: CertificateFiles) -> Pair:
    """Read the files and check that the key fits the certificate; ConfigError if not."""
    key = _private_key(files.private_key)
    leaf, *chain = read_certificates(files.certificate, "certificate")
    if _public_der(key.public_key()) != _public_der(leaf.public_key()):
        raise ConfigError(
            f"the TLS private key {files.private_key!r} does not belong to the certificate "
            f"{files.certificate!r} (the first certificate in the file must be the server's)"
        )
    if files.extra_chain is not None:
        chain += read_certificates(files.extra_chain, "certificate chain")
    dh = None
    if files.dh_parameters is not None:
        _read(files.dh_parameters, "DH parameters")
        dh = DiffieHellmanParameters.fromFile(FilePath(files.dh_parameters))
    return Pair(files, key, leaf, tuple(chain), dh)


def read_client_cas(path: str, mode: str) -> ClientCAs:
    return ClientCAs(mode, tuple(read_certificates(path, "client CA file")))


def server_context(pair: Pair, clients: ClientCAs | None, session_id: bytes) -> SSL.Context:
    """A server context for ``pair``: TLS 1.2+, modern suites, session tickets, and the
    client-certificate check. Every context of one listener gets the same ``session_id``
    (the session id context), so a session resumes whichever SNI context served it."""
    options = CertificateOptions(
        privateKey=crypto.PKey.from_cryptography_key(pair.key),
        certificate=crypto.X509.from_cryptography(pair.leaf),
        extraCertChain=[crypto.X509.from_cryptography(c) for c in pair.chain] or None,
        dhParameters=pair.dh,
        raiseMinimumTo=MINIMUM_VERSION,
        acceptableCiphers=MODERN_CIPHERS,
        # Resumption by ticket (RFC 8446 §2.2, RFC 5077): a returning client skips the
        # certificate signature. Keys are per process and per start, so no key file to guard.
        enableSessionTickets=True,
    )
    try:
        context = options.getContext()  # loads key and certificates into OpenSSL now
    except SSL.Error as error:
        raise ConfigError(
            f"OpenSSL refused the TLS key, certificates or DH parameters of "
            f"{pair.files.certificate!r}: {error}"
        ) from None
    context.set_session_id(session_id)
    if clients is not None:
        store = context.get_cert_store()
        assert store is not None  # a server context always has one
        for authority in clients.authorities:
            store.add_cert(crypto.X509.from_cryptography(authority))
            # The CertificateRequest names the acceptable CAs (RFC 8446 §4.2.4), so a
            # browser offers only the certificates that can pass.
            try:
                context.add_client_ca(authority)  # pyOpenSSL >= 24.3: deprecates X509 here
            except TypeError:  # pyOpenSSL before 24.3 takes an X509 only
                context.add_client_ca(crypto.X509.from_cryptography(authority))
        context.set_verify(VERIFY_MODES[clients.mode])  # OpenSSL's own chain check
    return context


# -- --cert-dir ---------------------------------------------------------------------------------

DEFAULT_NAME = "default"


def _dir_entries(directory: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            return sorted(
                (entry for entry in entries if not entry.name.startswith(".")),
                key=lambda entry: entry.name,
            )
    except OSError as error:
        raise ConfigError(f"cannot read the --cert-dir {directory!r}: {error.strerror}") from None


def cert_dir_files(directory: str) -> dict[str, CertificateFiles]:
    """The pairs in a --cert-dir by their entry name: ``NAME.crt`` with ``NAME.key``, or a
    ``NAME/`` directory with ``fullchain.pem`` and ``privkey.pem`` (certbot's live/). Other
    files (certbot's README) are ignored; a certificate without its key is an error."""
    found: dict[str, CertificateFiles] = {}
    entries = _dir_entries(directory)
    names = {entry.name for entry in entries}
    for entry in entries:
        path = os.path.join(directory, entry.name)
        if entry.is_dir():
            found[entry.name] = CertificateFiles(
                private_key=os.path.join(path, "privkey.pem"),
                certificate=os.path.join(path, "fullchain.pem"),
            )
        elif entry.name.endswith(".crt"):
            stem = entry.name[: -len(".crt")]
            if stem + ".key" not in names:
                raise ConfigError(
                    f"the --cert-dir certificate {path!r} has no {stem}.key beside it"
                )
            found[stem] = CertificateFiles(private_key=path[:-4] + ".key", certificate=path)
        elif entry.name.endswith(".key") and entry.name[:-4] + ".crt" not in names:
            raise ConfigError(f"the --cert-dir key {path!r} has no {entry.name[:-4]}.crt beside it")
    if not found:
        raise ConfigError(
            f"the --cert-dir {directory!r} holds no certificate: put NAME.crt with NAME.key, "
            "or NAME/fullchain.pem with NAME/privkey.pem, in it"
        )
    return found
