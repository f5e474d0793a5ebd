"""Certificates seen by real TLS clients: --certfile, SNI (--cert-dir), client certificates,
SIGHUP reload, bad files at start.

Every certificate is made by the test (cryptography): a CA the clients trust, a server
certificate per SNI name, a wildcard, a default, an expired one, client certificates and a
CA nobody trusts. Clients are Python's ssl module, verifying chain and host name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from tests.conftest import ROOT, Running, treadle_command
from tests.integration.tlscerts import Authority, write_pair
from tests.integration.wire import read_response

DEADLINE_S = 30.0
HTTPS = re.compile(r"https://127\.0\.0\.1:(\d+)")
APP = "tests.apps.tlsinfo:app"
TCP = "tcp:0:interface=127.0.0.1"


@dataclass
class PKI:
    ca: Authority
    rogue: Authority  # a CA neither side trusts
    cert_dir: Path
    certs: dict[str, x509.Certificate]  # entry name in cert_dir -> its certificate
    alice: tuple[Path, Path, x509.Certificate]  # client cert, key, certificate
    mallory: tuple[Path, Path]  # a client certificate from the rogue CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    root = tmp_path_factory.mktemp("pki")
    ca = Authority(root)
    rogue = Authority(root, "rogue CA")
    cert_dir = root / "certs"
    cert_dir.mkdir()
    certs: dict[str, x509.Certificate] = {}
    for entry, names, expired in [
        ("default", ["default.example.test"], False),
        ("a.example.test", ["a.example.test"], False),
        ("wild", ["*.wild.example.test"], False),
        ("expired", ["expired.example.test"], True),
    ]:
        key, cert = ca.issue(names, expired=expired)
        write_pair(key, cert, cert_dir / f"{entry}.crt", cert_dir / f"{entry}.key")
        certs[entry] = cert
    # certbot's layout: live/NAME/fullchain.pem (certificate, then the CA) and privkey.pem
    key, cert = ca.issue(["b.example.test", "www.b.example.test"])
    (cert_dir / "b.example.test").mkdir()
    write_pair(
        key,
        cert,
        cert_dir / "b.example.test" / "fullchain.pem",
        cert_dir / "b.example.test" / "privkey.pem",
    )
    fullchain = cert_dir / "b.example.test" / "fullchain.pem"
    fullchain.write_bytes(fullchain.read_bytes() + ca.path.read_bytes())
    certs["b.example.test"] = cert
    (cert_dir / "README").write_text("certbot leaves this here; treadle ignores it\n")
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"),
            x509.NameAttribute(NameOID.COMMON_NAME, "alice"),
        ]
    )
    key, cert = ca.issue([], subject=subject, client=True)
    write_pair(key, cert, root / "alice.crt", root / "alice.key")
    key, rogue_cert = rogue.issue([], client=True)
    write_pair(key, rogue_cert, root / "mallory.crt", root / "mallory.key")
    return PKI(
        ca, rogue, cert_dir, certs, (root / "alice.crt", root / "alice.key", cert),
        (root / "mallory.crt", root / "mallory.key"),
    )  # fmt: skip


def start(serve: Callable[..., Running], *args: str, bind: str = TCP) -> Running:
    """A tlsinfo server; .port is its https port, read from the start-up line."""
    server = serve(APP, *args, bind=bind, ready=False)
    line = server.wait_for_line("Listening at:")
    found = HTTPS.search(line)
    assert found, f"the start-up line does not say https://: {line}"
    server.port = int(found[1])
    return server


def client(pki: PKI, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca.path))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    return context


def connect(port: int, context: ssl.SSLContext, server_name: str | None) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S)
    try:
        return context.wrap_socket(raw, server_hostname=server_name)
    except BaseException:
        raw.close()
        raise


def get(sock: ssl.SSLSocket, close: bool = False) -> dict:
    extra = "Connection: close\r\n" if close else ""
    sock.sendall(f"GET / HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
    response = read_response(sock)
    assert response.status == 200
    return json.loads(response.body)


def visit(
    port: int, context: ssl.SSLContext, server_name: str | None
) -> tuple[x509.Certificate, dict]:
    """One connection and request: the certificate the server sent, and what the app saw."""
    with connect(port, context, server_name) as sock:
        der = sock.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der), get(sock, close=True)


def fingerprint(cert: x509.Certificate) -> bytes:
    return cert.fingerprint(hashes.SHA256())


# -- --certfile / --keyfile ------------------------------------------------------------------


def test_certfile_and_keyfile_make_a_tcp_bind_https(serve, pki: PKI) -> None:  # noqa: ANN001
    cert, key = pki.cert_dir / "a.example.test.crt", pki.cert_dir / "a.example.test.key"
    server = start(serve, "--certfile", str(cert), "--keyfile", str(key))
    peer, environ = visit(server.port, client(pki), "a.example.test")
    assert fingerprint(peer) == fingerprint(pki.certs["a.example.test"])
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["HTTPS"] == "on"
    assert environ["SSL_PROTOCOL"] in ("TLSv1.2", "TLSv1.3")
    assert environ["SSL_TLS_SNI"] == "a.example.test"
    assert not [key for key in environ if key.startswith("SSL_CLIENT_")]


def test_certfile_alone_may_hold_the_key_too(serve, pki: PKI, tmp_path: Path) -> None:  # noqa: ANN001
    both = tmp_path / "both.pem"
    both.write_bytes(
        (pki.cert_dir / "a.example.test.key").read_bytes()
        + (pki.cert_dir / "a.example.test.crt").read_bytes()
    )
    server = start(serve, "--certfile", str(both))
    peer, environ = visit(server.port, client(pki), "a.example.test")
    assert fingerprint(peer) == fingerprint(pki.certs["a.example.test"])


def test_only_modern_suites_and_tls_1_2_up(serve, pki: PKI) -> None:  # noqa: ANN001
    cert, key = pki.cert_dir / "a.example.test.crt", pki.cert_dir / "a.example.test.key"
    server = start(serve, "--certfile", str(cert), "--keyfile", str(key))
    cbc = client(pki)
    cbc.maximum_version = ssl.TLSVersion.TLSv1_2
    cbc.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384")  # CBC, no AEAD
    with pytest.raises(ssl.SSLError), connect(server.port, cbc, "a.example.test"):
        pass
    gcm = client(pki)
    gcm.maximum_version = ssl.TLSVersion.TLSv1_2
    gcm.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    with connect(server.port, gcm, "a.example.test") as sock:
        assert sock.version() == "TLSv1.2"
        assert get(sock)["SSL_CIPHER"] == "ECDHE-ECDSA-AES128-GCM-SHA256"


def test_a_unix_bind_stays_plain_http_beside_certfile(serve, pki: PKI, tmp_path: Path) -> None:  # noqa: ANN001
    cert, key = pki.cert_dir / "a.example.test.crt", pki.cert_dir / "a.example.test.key"
    path = tmp_path / "s.sock"
    server = start(serve, "--certfile", str(cert), "--keyfile", str(key), "--bind", f"unix:{path}")
    assert f"unix:{path}" in server.wait_for_line("Listening at:")
    with socket.socket(socket.AF_UNIX) as plain:
        plain.settimeout(DEADLINE_S)
        plain.connect(str(path))
        assert get(plain)["wsgi.url_scheme"] == "http"  # type: ignore[arg-type]


# -- SNI: --cert-dir -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sni_server(pki: PKI) -> Running:
    server = Running(treadle_command("serve", APP, "--bind", TCP, "--cert-dir", str(pki.cert_dir)))
    line = server.wait_for_line("Listening at:")
    found = HTTPS.search(line)
    assert found, line
    server.port = int(found[1])
    yield server
    server.kill()


@pytest.mark.parametrize(
    ("server_name", "entry"),
    [
        ("a.example.test", "a.example.test"),  # NAME.crt / NAME.key
        ("A.Example.Test", "a.example.test"),  # DNS names ignore case
        ("b.example.test", "b.example.test"),  # certbot's NAME/fullchain.pem
        ("www.b.example.test", "b.example.test"),  # a second name of the same certificate
        ("x.wild.example.test", "wild"),  # *.wild.example.test
        ("default.example.test", "default"),
    ],
)
def test_each_name_gets_its_certificate(sni_server: Running, pki: PKI, server_name, entry) -> None:  # noqa: ANN001
    peer, environ = visit(sni_server.port, client(pki), server_name)
    assert fingerprint(peer) == fingerprint(pki.certs[entry])
    assert environ["SSL_TLS_SNI"] == server_name.lower() or environ["SSL_TLS_SNI"] == server_name


def test_a_client_without_sni_gets_the_default(sni_server: Running, pki: PKI) -> None:
    context = client(pki)
    context.check_hostname = False  # an IP address: no SNI, no name to check; chain still is
    peer, environ = visit(sni_server.port, context, None)
    assert fingerprint(peer) == fingerprint(pki.certs["default"])
    assert "SSL_TLS_SNI" not in environ


@pytest.mark.parametrize(
    "server_name",
    [
        "unknown.example.test",
        "wild.example.test",  # the wildcard covers one label more, not its parent
        "x.y.wild.example.test",  # nor two labels more (RFC 6125 §6.4.3)
    ],
)
def test_an_unknown_name_gets_the_default_which_the_client_refuses(
    sni_server: Running, pki: PKI, server_name: str
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        visit(sni_server.port, client(pki), server_name)
    context = client(pki)
    context.check_hostname = False
    peer, _ = visit(sni_server.port, context, server_name)
    assert fingerprint(peer) == fingerprint(pki.certs["default"])


def test_an_expired_certificate_is_refused_by_the_client(sni_server: Running, pki: PKI) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
        visit(sni_server.port, client(pki), "expired.example.test")
    # ...and the server goes on serving the others.
    peer, _ = visit(sni_server.port, client(pki), "a.example.test")
    assert fingerprint(peer) == fingerprint(pki.certs["a.example.test"])


def test_a_returning_client_resumes_on_an_sni_certificate(sni_server: Running, pki: PKI) -> None:
    context = client(pki)
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # the session is there at once
    with connect(sni_server.port, context, "b.example.test") as sock:
        get(sock, close=True)
        session = sock.session
    raw = socket.create_connection(("127.0.0.1", sni_server.port), timeout=DEADLINE_S)
    with context.wrap_socket(raw, server_hostname="b.example.test", session=session) as sock:
        assert sock.session_reused
        get(sock, close=True)


# -- client certificates ----------------------------------------------------------------------


def client_cert_server(serve, pki: PKI, mode: str) -> Running:  # noqa: ANN001
    cert, key = pki.cert_dir / "a.example.test.crt", pki.cert_dir / "a.example.test.key"
    return start(
        serve,
        "--certfile", str(cert), "--keyfile", str(key),
        "--client-ca", str(pki.ca.path), "--client-cert", mode,
    )  # fmt: skip


def refused(port: int, context: ssl.SSLContext) -> bool:
    """True when the server refuses the client: in the handshake (TLS 1.2) or, as TLS 1.3
    checks the client's certificate after the client's side is done, at the first read."""
    try:
        with connect(port, context, "a.example.test") as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return sock.recv(65536) == b""
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True


def test_required_client_certificate(serve, pki: PKI) -> None:  # noqa: ANN001
    server = client_cert_server(serve, pki, "required")
    assert refused(server.port, client(pki))  # no certificate
    assert refused(server.port, client(pki, pki.mallory))  # from a CA the server does not trust
    _, environ = visit(server.port, client(pki, pki.alice[:2]), "a.example.test")  # type: ignore[arg-type]
    alice = pki.alice[2]
    assert environ["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert environ["SSL_CLIENT_S_DN"] == "CN=alice,O=Example"  # RFC 4514, as mod_ssl
    assert environ["SSL_CLIENT_I_DN"] == "CN=treadle test CA"
    assert environ["SSL_CLIENT_M_SERIAL"] == f"{alice.serial_number:X}"
    assert environ["SSL_CLIENT_CERT"] == alice.public_bytes(serialization.Encoding.PEM).decode()
    assert environ["SSL_CLIENT_V_END"].endswith(" GMT")
    # refusing clients cost the server nothing: it still serves
    assert visit(server.port, client(pki, pki.alice[:2]), "a.example.test")[1]["HTTPS"] == "on"  # type: ignore[arg-type]


def test_optional_client_certificate(serve, pki: PKI) -> None:  # noqa: ANN001
    server = client_cert_server(serve, pki, "optional")
    _, environ = visit(server.port, client(pki), "a.example.test")
    assert environ["HTTPS"] == "on"
    assert not [key for key in environ if key.startswith("SSL_CLIENT_")]
    _, environ = visit(server.port, client(pki, pki.alice[:2]), "a.example.test")  # type: ignore[arg-type]
    assert environ["SSL_CLIENT_S_DN"] == "CN=alice,O=Example"
    assert refused(server.port, client(pki, pki.mallory))  # a bad one is still refused


def test_http2_requests_see_the_client_certificate_too(serve, pki: PKI) -> None:  # noqa: ANN001
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    server = client_cert_server(serve, pki, "required")
    cert, key, alice = pki.alice
    result = subprocess.run(
        [
            "curl", "-sS", "--http2", "--max-time", "20", "--cacert", str(pki.ca.path),
            "--cert", str(cert), "--key", str(key),
            "--resolve", f"a.example.test:{server.port}:127.0.0.1",
            f"https://a.example.test:{server.port}/",
        ],
        capture_output=True, text=True, timeout=DEADLINE_S,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    environ = json.loads(result.stdout)
    assert environ["SERVER_PROTOCOL"] == "HTTP/2"
    assert environ["SSL_CLIENT_S_DN"] == "CN=alice,O=Example"
    assert environ["SSL_TLS_SNI"] == "a.example.test"


# -- SIGHUP: certificates re-read, open connections kept ----------------------------------------


def test_sighup_rereads_certificates_and_keeps_connections(serve, pki: PKI, tmp_path: Path) -> None:  # noqa: ANN001
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    old_key, old = pki.ca.issue(["a.example.test"])
    write_pair(old_key, old, cert, key)
    server = start(serve, "--certfile", str(cert), "--keyfile", str(key))
    context = client(pki)
    with connect(server.port, context, "a.example.test") as kept:
        get(kept)
        new_key, new = pki.ca.issue(["a.example.test"])
        write_pair(new_key, new, cert, key)
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for_line("SIGHUP: TLS certificates re-read")
        peer, _ = visit(server.port, context, "a.example.test")
        assert fingerprint(peer) == fingerprint(new)
        # The connection opened before goes on, with the certificate it started with.
        assert get(kept)["HTTPS"] == "on"
        assert fingerprint(x509.load_der_x509_certificate(kept.getpeercert(True))) == (
            fingerprint(old)
        )
    # A bad file on the next SIGHUP: one error line, and the last good certificate stays.
    cert.write_text("not a certificate\n")
    server.proc.send_signal(signal.SIGHUP)
    line = server.wait_for_line("certificates not re-read")
    assert "holds no PEM certificate" in line
    peer, _ = visit(server.port, context, "a.example.test")
    assert fingerprint(peer) == fingerprint(new)
    assert server.proc.poll() is None


def test_sighup_picks_up_a_new_name_in_the_cert_dir(serve, pki: PKI, tmp_path: Path) -> None:  # noqa: ANN001
    cert_dir = tmp_path / "certs"
    cert_dir.mkdir()
    for entry in ("default", "a.example.test"):
        for suffix in (".crt", ".key"):
            (cert_dir / (entry + suffix)).write_bytes(
                (pki.cert_dir / (entry + suffix)).read_bytes()
            )
    server = start(serve, "--cert-dir", str(cert_dir))
    with pytest.raises(ssl.SSLCertVerificationError):
        visit(server.port, client(pki), "c.example.test")  # the default's name does not match
    key, cert = pki.ca.issue(["c.example.test"])
    write_pair(key, cert, cert_dir / "c.example.test.crt", cert_dir / "c.example.test.key")
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for_line("SIGHUP: TLS certificates re-read")
    peer, _ = visit(server.port, client(pki), "c.example.test")
    assert fingerprint(peer) == fingerprint(cert)


def test_workers_read_renewed_certificates_on_sighup(serve, pki: PKI, tmp_path: Path) -> None:  # noqa: ANN001
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    old_key, old = pki.ca.issue(["a.example.test"])
    write_pair(old_key, old, cert, key)
    server = serve(
        APP, "--workers", "2", "--certfile", str(cert), "--keyfile", str(key), bind=TCP,
        ready=False,
    )  # fmt: skip
    assert HTTPS.search(server.wait_for_line("starting 2 workers on"))  # the supervisor's line
    line = server.wait_for_line("Listening at:")  # a worker's
    found = HTTPS.search(line)
    assert found, line
    port = int(found[1])
    context = client(pki)
    with connect(port, context, "a.example.test") as kept:
        first = get(kept)["pid"]
        assert fingerprint(x509.load_der_x509_certificate(kept.getpeercert(True))) == (
            fingerprint(old)
        )
        new_key, new = pki.ca.issue(["a.example.test"])
        write_pair(new_key, new, cert, key)
        server.proc.send_signal(signal.SIGHUP)
        # The old workers drain once the new ones are ready; new connections go to those.
        new_pids: set[int] = set()
        deadline = time.monotonic() + 60  # new workers start slowly on a loaded machine
        while time.monotonic() < deadline:
            peer, environ = visit(port, context, "a.example.test")
            if fingerprint(peer) == fingerprint(new):
                new_pids.add(environ["pid"])
                break
        assert new_pids, "no new worker served the renewed certificate"
        assert first not in new_pids
        # Its old worker drained: the idle kept-alive connection is closed cleanly (TLS
        # close_notify, then EOF), as over plain HTTP; the client opens a new one.
        kept.settimeout(DEADLINE_S)
        assert kept.recv(1) == b""


def test_a_bad_file_at_a_workers_reload_keeps_the_old_workers(
    serve, pki: PKI, tmp_path: Path
) -> None:  # noqa: ANN001
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    old_key, old = pki.ca.issue(["a.example.test"])
    write_pair(old_key, old, cert, key)
    server = serve(
        APP, "--workers", "2", "--certfile", str(cert), "--keyfile", str(key), bind=TCP,
        ready=False,
    )  # fmt: skip
    port = int(HTTPS.search(server.wait_for_line("workers ready at"))[1])  # type: ignore[index]
    cert.write_text("not a certificate\n")
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for_line("reload failed")
    peer, environ = visit(port, client(pki), "a.example.test")
    assert fingerprint(peer) == fingerprint(old)
    assert server.proc.poll() is None


def test_a_graceful_stop_delivers_the_last_response_over_tls(serve, pki: PKI) -> None:  # noqa: ANN001
    # Regression: the stop closed the connection right after the app's response was handed
    # to the TLS transport, and the process exited before those bytes reached the socket (a
    # draining worker's client saw the connection closed without its response).
    cert, key = pki.cert_dir / "a.example.test.crt", pki.cert_dir / "a.example.test.key"
    server = serve(
        "tests.apps.slow:app", "--certfile", str(cert), "--keyfile", str(key),
        bind=TCP, ready=False,
    )  # fmt: skip
    port = int(HTTPS.search(server.wait_for_line("Listening at:"))[1])  # type: ignore[index]
    with connect(port, client(pki), "a.example.test") as sock:
        sock.sendall(b"GET /last?s=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        server.wait_for_line("slow app start /last")
        server.proc.send_signal(signal.SIGTERM)
        response = read_response(sock)
    assert response.status == 200
    assert response.body == b"done after 1.00\n"
    assert server.proc.wait(DEADLINE_S) == 0


# -- bad files fail at start: one line, status 2 -------------------------------------------------


def run_serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        treadle_command("serve", APP, "--bind", TCP, *args),
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def bad(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[list[str], str]]:
    root = tmp_path_factory.mktemp("bad")
    good_cert = str(pki.cert_dir / "a.example.test.crt")
    good_key = str(pki.cert_dir / "a.example.test.key")
    other_key = str(pki.cert_dir / "default.key")
    (root / "not-pem.pem").write_text("hello\n")
    (root / "damaged.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    )
    (root / "a-directory").mkdir()

    def cert_dir(name: str, files: dict[str, str | bytes]) -> str:
        directory = root / name
        directory.mkdir()
        for file_name, content in files.items():
            path = directory / file_name
            path.parent.mkdir(exist_ok=True)
            if isinstance(content, str):
                content = Path(content).read_bytes()
            path.write_bytes(content)
        return str(directory)

    default = {"default.crt": str(pki.cert_dir / "default.crt"),
               "default.key": str(pki.cert_dir / "default.key")}  # fmt: skip
    return {
        "missing cert": (["--certfile", str(root / "nope.pem")], "nope.pem': No such file"),
        "missing key": (
            ["--certfile", good_cert, "--keyfile", str(root / "nope.pem")],
            "cannot read the TLS private key",
        ),
        "unreadable key": (
            ["--certfile", good_cert, "--keyfile", str(root / "a-directory")],
            "Is a directory",
        ),
        "cert not PEM": (
            ["--certfile", str(root / "not-pem.pem"), "--keyfile", good_key],
            "holds no PEM certificate",
        ),
        "damaged cert": (
            ["--certfile", str(root / "damaged.pem"), "--keyfile", good_key],
            "holds a damaged certificate",
        ),
        "key not PEM": (
            ["--certfile", good_cert, "--keyfile", str(root / "not-pem.pem")],
            "holds no PEM private key",
        ),
        "key of another cert": (
            ["--certfile", good_cert, "--keyfile", other_key],
            "does not belong to the certificate",
        ),
        "no cert dir": (["--cert-dir", str(root / "nowhere")], "cannot read the --cert-dir"),
        "empty cert dir": (["--cert-dir", cert_dir("empty", {})], "holds no certificate"),
        "cert dir: crt without key": (
            ["--cert-dir", cert_dir("lonely", {**default, "x.crt": good_cert})],
            "has no x.key beside it",
        ),
        "cert dir: key not matching": (
            ["--cert-dir",
             cert_dir("mismatch", {**default, "x.crt": good_cert, "x.key": other_key})],
            "does not belong to the certificate",
        ),
        "cert dir: certbot dir without privkey": (
            ["--cert-dir", cert_dir("certbot", {**default, "x/fullchain.pem": good_cert})],
            "privkey.pem",
        ),
        "cert dir: no default": (
            ["--cert-dir", cert_dir("nodefault", {"x.crt": good_cert, "x.key": good_key})],
            "has no default certificate",
        ),
        "client ca not PEM": (
            ["--certfile", good_cert, "--keyfile", good_key, "--client-cert", "required",
             "--client-ca", str(root / "not-pem.pem")],
            "the TLS client CA file",
        ),
    }  # fmt: skip


BAD_CASES = [
    "missing cert",
    "missing key",
    "unreadable key",
    "cert not PEM",
    "damaged cert",
    "key not PEM",
    "key of another cert",
    "no cert dir",
    "empty cert dir",
    "cert dir: crt without key",
    "cert dir: key not matching",
    "cert dir: certbot dir without privkey",
    "cert dir: no default",
    "client ca not PEM",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_files_fail_at_start_with_one_line_and_status_2(bad, case: str) -> None:  # noqa: ANN001
    args, message = bad[case]
    result = run_serve(*args)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1, output
    assert message in output
    assert "Listening at" not in output


@pytest.mark.parametrize("case", ["key of another cert", "cert dir: no default"])
def test_bad_files_stop_the_supervisor_before_any_worker(bad, case: str) -> None:  # noqa: ANN001
    args, message = bad[case]
    result = run_serve("--workers", "2", *args)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2, output
    assert len(output.splitlines()) == 1, output
    assert message in output
    assert "worker" not in output


def test_two_certificates_for_one_name_fail_at_start(pki: PKI, tmp_path: Path) -> None:
    for entry in ("default", "a.example.test"):
        for suffix in (".crt", ".key"):
            (tmp_path / (entry + suffix)).write_bytes(
                (pki.cert_dir / (entry + suffix)).read_bytes()
            )
    key, cert = pki.ca.issue(["a.example.test"])
    write_pair(key, cert, tmp_path / "again.crt", tmp_path / "again.key")
    result = run_serve("--cert-dir", str(tmp_path))
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2, output
    assert len(output.splitlines()) == 1, output
    assert "two TLS certificates are for 'a.example.test'" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--keyfile", "k.pem"], "--keyfile needs --certfile"),
        (["--certfile", "c.pem", "--client-cert", "required"], "needs --client-ca"),
        (
            ["--certfile", "c.pem", "--ca-certs", "ca.pem"],
            "needs --client-cert optional or required",
        ),
        (["--cert-reqs", "2"], "use --client-cert none|optional|required"),
    ],
)
def test_settings_that_do_not_fit_together(args: list[str], message: str) -> None:
    result = run_serve(*args)
    assert result.returncode == 2
    assert message in result.stdout + result.stderr
