"""tls_environ.py: a verified client certificate -> mod_ssl's SSL_CLIENT_* environ values."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from treadle.tls_environ import client_certificate_environ


def certificate(subject: x509.Name, issuer: x509.Name) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    start = datetime.datetime(2026, 11, 30, 23, 5, 45, tzinfo=datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(0xABCDEF0123)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=1, hours=2))
        .sign(key, hashes.SHA256())
    )


def name(**parts: str) -> x509.Name:
    oids = {"C": NameOID.COUNTRY_NAME, "O": NameOID.ORGANIZATION_NAME, "CN": NameOID.COMMON_NAME}
    return x509.Name([x509.NameAttribute(oids[key], value) for key, value in parts.items()])


def test_the_keys_mod_ssl_gives() -> None:
    cert = certificate(name(C="FR", O="Example, Inc.", CN="alice"), name(CN="Example CA"))
    environ = client_certificate_environ(cert)
    assert environ == {
        "SSL_CLIENT_VERIFY": "SUCCESS",
        # RFC 4514: most specific first, the comma in a value escaped
        "SSL_CLIENT_S_DN": "CN=alice,O=Example\\, Inc.,C=FR",
        "SSL_CLIENT_I_DN": "CN=Example CA",
        "SSL_CLIENT_M_SERIAL": "ABCDEF0123",
        "SSL_CLIENT_V_START": "Nov 30 23:05:45 2026 GMT",
        "SSL_CLIENT_V_END": "Dec  2 01:05:45 2026 GMT",
        "SSL_CLIENT_CERT": cert.public_bytes(serialization.Encoding.PEM).decode(),
    }


def test_a_non_ascii_subject_is_its_utf8_bytes_as_a_native_string() -> None:
    environ = client_certificate_environ(certificate(name(CN="Zoë"), name(CN="CA")))
    # PEP 3333: native strings hold bytes as latin-1; the app recovers the text so.
    assert environ["SSL_CLIENT_S_DN"] == "CN=Zo\xc3\xab"
    assert environ["SSL_CLIENT_S_DN"].encode("latin-1").decode("utf-8") == "CN=Zoë"
