"""A small blocking HTTP/2 client over real sockets, built on the h2 library, for the tests.

It can behave (requests, flow control with a chosen window) and misbehave (raw frames,
floods, resets). Every wait has a deadline; nothing sleeps.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes

DEADLINE_S = 30.0


@dataclass
class Stream:
    status: int | None = None
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None  # the error code of the server's RST_STREAM


class H2Client:
    """One connection. ``tls_ca`` set: TLS with ALPN h2; else h2c by prior knowledge."""

    def __init__(
        self,
        port: int,
        *,
        tls_ca: Path | None = None,
        window: int | None = None,
        auto_ack: bool = True,
        preface: bool = True,
    ) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S)
        if tls_ca is not None:
            context = ssl.create_default_context(cafile=str(tls_ca))
            context.set_alpn_protocols(["h2"])
            self.sock: socket.socket = context.wrap_socket(raw, server_hostname="127.0.0.1")
            assert self.sock.selected_alpn_protocol() == "h2"  # type: ignore[attr-defined]
        else:
            self.sock = raw
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config)
        self.auto_ack = auto_ack
        self.streams: dict[int, Stream] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.closed = False  # the server closed the socket
        self.settings: dict[int, int] = {}
        self.inbuf = b""  # bytes of an incomplete frame
        if preface:
            if window is not None:
                initial = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}
                self.conn.local_settings = h2.settings.Settings(client=True, initial_values=initial)
            self.conn.initiate_connection()
            self.flush()

    # -- sending ------------------------------------------------------------------

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: list[tuple[str, str]] | None = None,
        end: bool = True,
    ) -> int:
        sid = self.conn.get_next_available_stream_id()
        fields = [
            (b":method", method.encode()),
            (b":path", path.encode()),
            (b":scheme", b"https"),
            (b":authority", b"127.0.0.1"),
        ] + [(k.encode(), v.encode()) for k, v in headers or []]
        self.streams[sid] = Stream()
        self.conn.send_headers(sid, fields, end_stream=end and not body)
        if body:
            self.send_body(sid, body, end=end)
        self.flush()
        return sid

    def send_body(self, sid: int, body: bytes, end: bool = True) -> None:
        """Send ``body`` as the windows allow, reading the server's frames meanwhile."""
        view = memoryview(body)
        while view:
            room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if room <= 0:
                self.read_some()
                continue
            self.conn.send_data(sid, bytes(view[:room]))
            view = view[room:]
            self.flush()
        if end:
            self.conn.end_stream(sid)
            self.flush()

    def reset(self, sid: int) -> None:
        self.conn.reset_stream(sid)
        self.flush()

    # -- receiving ----------------------------------------------------------------

    def read_some(self, timeout: float = DEADLINE_S) -> None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
            data = b""
        if not data:
            self.closed = True
            return
        for event in self.conn.receive_data(self.graceful_goaway_removed(data)):
            self.on_event(event)
        self.flush()

    def graceful_goaway_removed(self, data: bytes) -> bytes:
        """The frames in ``data``, less a graceful GOAWAY (NO_ERROR), which is noted.

        h2 as a client stops taking frames after any GOAWAY; a real client (curl, a
        browser) reads the responses of the streams the GOAWAY lets finish.
        """
        self.inbuf += data
        out = bytearray()
        while len(self.inbuf) >= 9:
            length = int.from_bytes(self.inbuf[:3], "big")
            if len(self.inbuf) < 9 + length:
                break
            frame, self.inbuf = self.inbuf[: 9 + length], self.inbuf[9 + length :]
            if frame[3] == 7 and int.from_bytes(frame[13:17], "big") == 0:
                last = int.from_bytes(frame[9:13], "big") & 0x7FFFFFFF
                self.goaway = h2.events.ConnectionTerminated()
                self.goaway.error_code = ErrorCodes.NO_ERROR
                self.goaway.last_stream_id = last
                continue
            out += frame
        return bytes(out)

    def on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            stream = self.streams.setdefault(event.stream_id, Stream())
            headers = dict(event.headers or [])
            stream.status = int(headers.pop(b":status"))
            stream.headers = headers
        elif isinstance(event, h2.events.DataReceived):
            stream = self.streams.setdefault(event.stream_id, Stream())
            stream.body += event.data or b""
            if self.auto_ack and event.flow_controlled_length:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            self.streams.setdefault(event.stream_id, Stream()).ended = True
        elif isinstance(event, h2.events.StreamReset):
            self.streams.setdefault(event.stream_id, Stream()).reset = event.error_code
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.settings.update({k: v.new_value for k, v in event.changed_settings.items()})

    def wait(self, condition: Callable[[], bool], timeout: float = DEADLINE_S) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            assert left > 0, "timed out waiting on the server"
            if self.closed:
                raise AssertionError("the server closed the connection")
            self.read_some(left)

    def wait_closed(self, timeout: float = DEADLINE_S) -> None:
        """Read (and drop) until the server closes the socket."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            left = deadline - time.monotonic()
            assert left > 0, "the server kept the connection open"
            try:
                self.read_some(left)
            except h2.exceptions.ProtocolError:
                continue  # our state machine disagrees after a GOAWAY: keep reading

    def response(self, sid: int, timeout: float = DEADLINE_S) -> Stream:
        stream = self.streams[sid]
        self.wait(lambda: stream.ended or stream.reset is not None, timeout)
        return stream

    def get(self, path: str) -> Stream:
        return self.response(self.request("GET", path))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
