"""HTTP/2 limits and floods: each abuser is closed with GOAWAY and the server goes on serving.

The h2 library plays the client, sending well-formed floods (rapid reset, PING, SETTINGS,
empty DATA), oversized or endless header blocks (CONTINUATION), too many streams, and
broken protocol (bad preface, window overflow, stream id reuse). After each, a second
client that was connected all along is still served.
"""

from __future__ import annotations

import socket
import ssl

import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tests.integration.h2client import H2Client
from tests.integration.tlscerts import Certs, make_certs

REQUEST = [
    (b":method", b"GET"),
    (b":path", b"/"),
    (b":scheme", b"http"),
    (b":authority", b"127.0.0.1"),
]


@pytest.fixture
def server(serve):  # noqa: ANN001, ANN201
    # The bystander idles through each attack: --keep-alive must not close it meanwhile.
    return serve("tests.apps.hello:app", "--h2c", "--keep-alive", "120")


def goaway_then_closed(client: H2Client, code: ErrorCodes) -> None:
    client.wait_closed()
    assert client.goaway is not None, "no GOAWAY before the close"
    assert client.goaway.error_code == code


def still_serving(server, bystander: H2Client) -> None:  # noqa: ANN001
    assert bystander.get("/after").status == 200
    with H2Client(server.port) as fresh:
        assert fresh.get("/fresh").status == 200


def open_client(server) -> H2Client:  # noqa: ANN001
    client = H2Client(server.port)
    assert client.get("/").status == 200  # settings exchanged, a stream served
    return client


def test_rapid_reset(server) -> None:  # noqa: ANN001
    with open_client(server) as bystander, open_client(server) as attacker:
        for _ in range(400):  # CVE-2023-44487: open a stream, reset it at once, repeat
            sid = attacker.conn.get_next_available_stream_id()
            attacker.conn.send_headers(sid, REQUEST)
            attacker.conn.reset_stream(sid)
        try:
            attacker.flush()
        except OSError:
            pass  # closed while we sent: fine, the GOAWAY was read before
        goaway_then_closed(attacker, ErrorCodes.ENHANCE_YOUR_CALM)
        still_serving(server, bystander)
    assert "rapid reset" in server.output


def test_too_many_concurrent_streams(serve) -> None:  # noqa: ANN001
    server = serve(
        "tests.apps.slow:app", "--h2c", "--h2-max-concurrent-streams", "10", "--keep-alive", "120"
    )
    with H2Client(server.port) as bystander, H2Client(server.port) as attacker:
        # The attacker does not read our SETTINGS first, so its h2 lets it open 20.
        try:
            for index in range(20):
                attacker.request("GET", f"/s{index}?s=0.5")
        except OSError:
            pass  # closed under our feet after the 11th: the GOAWAY is read below
        goaway_then_closed(attacker, ErrorCodes.PROTOCOL_ERROR)
        assert bystander.get("/after?s=0").status == 200
        assert bystander.settings[3] == 10  # SETTINGS_MAX_CONCURRENT_STREAMS


def test_an_oversized_header_list_closes_the_connection(server) -> None:  # noqa: ANN001
    with open_client(server) as bystander, open_client(server) as attacker:
        attacker.request("GET", "/big", headers=[("x-big", "b" * 100_000)])
        goaway_then_closed(attacker, ErrorCodes.ENHANCE_YOUR_CALM)
        still_serving(server, bystander)


def test_headers_over_max_header_bytes_get_431_on_their_stream(server) -> None:  # noqa: ANN001
    with open_client(server) as client:
        stream = client.response(client.request("GET", "/h", headers=[("x-big", "b" * 20_000)]))
        assert stream.status == 431
        assert client.get("/again").status == 200  # the same connection goes on


def test_continuation_flood(server) -> None:  # noqa: ANN001
    with open_client(server) as bystander, open_client(server) as attacker:
        sid = attacker.conn.get_next_available_stream_id()
        block = attacker.conn.encoder.encode(REQUEST)
        first = HeadersFrame(sid, data=block)  # no END_HEADERS: CONTINUATION must follow
        frames = [first.serialize()]
        for _ in range(200):  # never ending: 200 x 16 KiB of header block
            frames.append(ContinuationFrame(sid, data=b"\x00" * 16384).serialize())
        try:
            attacker.send_raw(b"".join(frames))
        except OSError:
            pass
        goaway_then_closed(attacker, ErrorCodes.ENHANCE_YOUR_CALM)
        still_serving(server, bystander)
    assert "CONTINUATION" in server.output


def test_many_tiny_continuation_frames(server) -> None:  # noqa: ANN001
    with open_client(server) as bystander, open_client(server) as attacker:
        sid = attacker.conn.get_next_available_stream_id()
        frames = [HeadersFrame(sid, data=b"").serialize()]
        frames += [ContinuationFrame(sid, data=b"").serialize() for _ in range(1000)]
        try:
            attacker.send_raw(b"".join(frames))
        except OSError:
            pass
        attacker.wait_closed()
        assert attacker.goaway is not None
        still_serving(server, bystander)


@pytest.mark.parametrize("kind", ["ping", "settings", "empty data"])
def test_control_frame_floods(server, kind: str) -> None:  # noqa: ANN001
    with open_client(server) as bystander, open_client(server) as attacker:
        if kind == "ping":
            frames = [PingFrame(0, opaque_data=b"%08d" % n) for n in range(300)]
        elif kind == "settings":
            frames = [SettingsFrame(0, settings={4: 65535}) for _ in range(300)]
        else:
            sid = attacker.request("POST", "/upload", end=False)
            frames = [DataFrame(sid, data=b"") for _ in range(300)]
        try:
            attacker.send_raw(b"".join(frame.serialize() for frame in frames))
        except OSError:
            pass
        goaway_then_closed(attacker, ErrorCodes.ENHANCE_YOUR_CALM)
        still_serving(server, bystander)


def test_window_overflow(server) -> None:  # noqa: ANN001
    with open_client(server) as bystander, open_client(server) as attacker:
        # RFC 9113 §6.9.1: a window past 2^31-1 is a FLOW_CONTROL_ERROR.
        attacker.send_raw(WindowUpdateFrame(0, window_increment=2**31 - 1).serialize())
        goaway_then_closed(attacker, ErrorCodes.FLOW_CONTROL_ERROR)
        still_serving(server, bystander)


def test_stream_id_reuse(server) -> None:  # noqa: ANN001
    with open_client(server) as bystander, open_client(server) as attacker:
        # Stream 1 was used and closed by open_client's request: open it again.
        block = attacker.conn.encoder.encode(REQUEST)
        frame = HeadersFrame(1, data=block, flags=["END_HEADERS", "END_STREAM"])
        attacker.send_raw(frame.serialize())
        attacker.wait_closed()
        assert attacker.goaway is not None
        assert attacker.goaway.error_code in (ErrorCodes.STREAM_CLOSED, ErrorCodes.PROTOCOL_ERROR)
        still_serving(server, bystander)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def test_a_bad_preface_after_alpn_h2(serve, certs: Certs) -> None:  # noqa: ANN001
    bind = f"ssl:0:interface=127.0.0.1:privateKey={certs.key}:certKey={certs.cert}"
    server = serve("tests.apps.hello:app", bind=bind)
    port = int(server.wait_for_line("Listening at:").rsplit(":", 1)[1].split()[0])
    context = ssl.create_default_context(cafile=str(certs.ca))
    context.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        assert sock.selected_alpn_protocol() == "h2"
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # not the HTTP/2 preface
        received = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            received += data
    # The server's SETTINGS, then GOAWAY (type 7) with PROTOCOL_ERROR, then the close.
    assert b"\x00\x00\x08\x07\x00\x00\x00\x00\x00" in received
    assert received.endswith((ErrorCodes.PROTOCOL_ERROR).to_bytes(4, "big"))
    with H2Client(port, tls_ca=certs.ca) as fresh:
        assert fresh.get("/").status == 200
