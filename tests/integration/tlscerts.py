"""Certificates for TLS tests, made by the test run: a CA and a server certificate it signed."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Certs:
    ca: Path  # the CA clients trust
    key: Path  # the server's private key
    cert: Path  # the server's certificate alone
    fullchain: Path  # the server's certificate, then the CA's (as certbot writes fullchain.pem)
    other_key: Path  # a key that belongs to no certificate here


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_certs(directory: Path) -> Certs:
    """A CA and a server certificate for 127.0.0.1 and localhost, valid for a day."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("treadle test CA"))
        .issuer_name(_name("treadle test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    certs = Certs(
        ca=directory / "ca.pem",
        key=directory / "key.pem",
        cert=directory / "cert.pem",
        fullchain=directory / "fullchain.pem",
        other_key=directory / "other-key.pem",
    )
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    certs.ca.write_bytes(ca_pem)
    certs.key.write_bytes(_pem_key(key))
    certs.cert.write_bytes(cert_pem)
    certs.fullchain.write_bytes(cert_pem + ca_pem)
    certs.other_key.write_bytes(_pem_key(ec.generate_private_key(ec.SECP256R1())))
    return certs


# -- an authority that issues certificates on demand (SNI, client certificates, reload) -------


def write_pair(
    key: ec.EllipticCurvePrivateKey, cert: x509.Certificate, cert_path: Path, key_path: Path
) -> None:
    """Write a key and its certificate as PEM files (the key readable by its owner only)."""
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(_pem_key(key))
    key_path.chmod(0o600)


class Authority:
    """A CA made by the test: ``issue`` signs server or client certificates with it."""

    def __init__(self, directory: Path, name: str = "treadle test CA") -> None:
        now = datetime.datetime.now(datetime.UTC)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.path = directory / f"{name.replace(' ', '-')}.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        dns_names: list[str],
        *,
        subject: x509.Name | None = None,
        client: bool = False,
        expired: bool = False,
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A fresh key and a certificate for it: a server's for ``dns_names`` (and
        127.0.0.1), or a client's; ``expired`` ended an hour ago."""
        now = datetime.datetime.now(datetime.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject or _name(dns_names[0] if dns_names else "client"))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=2 if expired else 0, minutes=5))
            .not_valid_after(
                now - datetime.timedelta(hours=1) if expired else now + datetime.timedelta(days=1)
            )
            .add_extension(
                x509.ExtendedKeyUsage([x509.OID_CLIENT_AUTH if client else x509.OID_SERVER_AUTH]),
                critical=False,
            )
        )
        if not client:
            names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
            names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return key, builder.sign(self.key, hashes.SHA256())
