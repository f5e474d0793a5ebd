"""Sans-IO HTTP/2 for the server side, over the ``h2`` library: bytes <-> stream events.

Pure layer: no sockets, no Twisted, no threads; time comes in as an argument. Each
request stream becomes the RequestHead, Data and EndOfMessage events of http/events.py
that http/h1.py produces, tagged with its stream id; a request the server refuses before
the app (431, 413, 414) is a ProtocolError for that stream. Responses leave as frames
within the peer's flow-control windows: what a window does not allow yet waits here, per
stream, and ``buffered`` tells the reactor side how much, so it can hold the app back.
Floods (rapid reset, CONTINUATION, PING, SETTINGS, empty DATA) are counted by
http/h2_floods.py before ``h2`` sees the bytes; past a limit the connection ends with GOAWAY.
Heads are converted by http/h2_heads.py.
"""

from __future__ import annotations

import binascii
from collections import deque
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes

from treadle.config import Limits
from treadle.errors import ProtocolError
from treadle.http.events import Data, EndOfMessage, Event
from treadle.http.h2_floods import FloodGuard
from treadle.http.h2_heads import Malformed, check_trailers, goaway_frame, request_head

# Receive windows we open (RFC 9113 §6.9.2 starts both at 64 KiB - 1).
STREAM_WINDOW_BYTES = 1024 * 1024
CONNECTION_WINDOW_BYTES = 16 * 1024 * 1024

# Response bytes held per stream before the app is told to wait (see ``buffered``).
STREAM_BUFFER_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class H2Limits:
    """What one HTTP/2 connection allows; the per-request limits come from config.Limits."""

    max_concurrent_streams: int = 100
    max_header_list_bytes: int = 64 * 1024


@dataclass(slots=True)
class StreamReset:
    """The client reset the stream (RST_STREAM) or it ended with the connection; or we did,
    for a malformed request (``reason`` then says why: the reactor side logs it)."""

    reason: str | None = None


@dataclass(slots=True)
class ConnectionEnded:
    """The connection is over: a GOAWAY was sent or received. Send what is left, close."""

    reason: str
    by_peer: bool = False


H2Event = Event | ProtocolError | StreamReset | ConnectionEnded


class _Outgoing:
    """A stream's response bytes not yet framed (the peer's window is shut)."""

    __slots__ = ("chunks", "size", "end")

    def __init__(self) -> None:
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.end = False


class H2Session:
    """One server-side HTTP/2 connection: bytes in -> (stream id, event); responses -> bytes.

    Called by one thread at a time (the reactor's). ``receive_data`` never raises: a
    broken peer yields ConnectionEnded, with the GOAWAY waiting in ``data_to_send``.
    """

    def __init__(
        self, limits: Limits, h2_limits: H2Limits, *, upgrade_settings: bytes | None = None
    ):
        self.limits = limits
        self.h2_limits = h2_limits
        # Heads are checked by h2_heads in one pass each way (request_head, response_head):
        # h2's own generator passes over them cost as much again (a tenth of a request).
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            split_outbound_cookies=False,
        )
        conn = self.conn = h2.connection.H2Connection(config)
        conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: h2_limits.max_concurrent_streams,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: h2_limits.max_header_list_bytes,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW_BYTES,
            },
        )
        # hpack stops decoding past this (h2 answers GOAWAY ENHANCE_YOUR_CALM): an
        # "HPACK bomb" never grows past the size we advertised.
        conn.decoder.max_header_list_size = h2_limits.max_header_list_bytes
        self.ended = False
        self.pending: dict[int, _Outgoing] = {}  # streams with response bytes not yet framed
        self.received: dict[int, int] = {}  # request body bytes per stream, for --max-body
        self.refused: set[int] = set()  # streams answered before their body was read
        self.reset_now: set[int] = set()  # malformed streams reset while reading a chunk
        # Flood accounting, from frame headers, before h2 sees the bytes.
        self.floods = FloodGuard(h2_limits.max_concurrent_streams, h2_limits.max_header_list_bytes)
        self.draining = False  # our graceful GOAWAY is sent: no new streams
        self.sent_bytes = 0  # response body bytes framed so far (progress, for --send-timeout)
        self.last_stream_id = 0
        self.early = b""  # frames framed here, sent before h2's next output
        if upgrade_settings is None:
            conn.initiate_connection()
            self.open_connection_window()
            return
        # RFC 7540 §3.2: the Upgrade request becomes stream 1, half-closed (remote).
        # HTTP2-Settings is base64url without padding (§3.2.1); Python wants the padding.
        value = upgrade_settings.strip()
        try:
            conn.initiate_upgrade_connection(value + b"=" * (-len(value) % 4))
        except (h2.exceptions.ProtocolError, ValueError, binascii.Error) as error:
            raise ProtocolError(f"bad HTTP2-Settings header: {error}") from None
        self.open_connection_window()

    def open_connection_window(self) -> None:
        """Uploads go to a spooled body as fast as they come (as for HTTP/1.1): a wide window
        spares the client a round trip per 32 KiB; --max-body still bounds each body."""
        self.conn.increment_flow_control_window(CONNECTION_WINDOW_BYTES - 65535)

    # -- incoming -------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[tuple[int, H2Event]]:
        if self.ended:
            return []
        flood = self.floods.scan(data, now)
        if flood is not None:
            return self.goaway(ErrorCodes.ENHANCE_YOUR_CALM, flood)
        try:
            h2_events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as error:
            # h2 has queued its GOAWAY (PROTOCOL_ERROR, FLOW_CONTROL_ERROR, ...), except for
            # a bad preface, where RFC 9113 §3.4 lets it be left out: we send it anyway, so
            # a confused client sees why it was closed.
            if self.conn.state_machine.state != h2.connection.ConnectionState.CLOSED:
                self.conn.close_connection(error.error_code)
            self.ended = True
            return [(0, ConnectionEnded(f"{type(error).__name__}: {error}"))]
        out: list[tuple[int, H2Event]] = []
        for event in h2_events:
            kind = type(event)
            if kind is h2.events.RequestReceived:
                self.request(event, out, now)  # type: ignore[arg-type]
                if self.ended:
                    return out  # too many malformed streams: GOAWAY is queued
            elif kind is h2.events.DataReceived:
                self.body(event, out)  # type: ignore[arg-type]
            elif kind is h2.events.StreamEnded:
                sid = event.stream_id  # type: ignore[attr-defined]
                if sid in self.refused:
                    if self.draining and sid > self.last_stream_id:
                        self.refused.discard(sid)  # refused by our GOAWAY: nothing follows
                else:
                    out.append((sid, EndOfMessage()))
                self.received.pop(sid, None)
            elif kind is h2.events.StreamReset:
                sid = event.stream_id  # type: ignore[attr-defined]
                self.forget(sid)
                out.append((sid, StreamReset()))
            elif kind is h2.events.ConnectionTerminated:
                self.ended = True
                out.append((0, ConnectionEnded("the client sent GOAWAY", by_peer=True)))
            elif kind is h2.events.TrailersReceived:
                # PEP 3333 has no place for request trailers; the body is whole. Still,
                # a malformed trailer section makes the request malformed (§8.1.1).
                try:
                    check_trailers(event.headers or [])  # type: ignore[attr-defined]
                except Malformed as error:
                    if self.malformed(event.stream_id, error, now, out):  # type: ignore[attr-defined]
                        return out
        if self.reset_now:
            # h2 drops whatever else the client sends on a stream it saw us reset.
            self.refused -= self.reset_now
            self.reset_now.clear()
        return out

    def malformed(
        self, sid: int, error: Malformed, now: float, out: list[tuple[int, H2Event]]
    ) -> bool:
        """RFC 9113 §8.1.1: a malformed request is a stream error (RST_STREAM
        PROTOCOL_ERROR); the connection serves on. Counted with the client's own resets
        (a client making us reset streams is the same flood: "MadeYouReset", 2025):
        True when that ended the connection."""
        out.append((sid, StreamReset(f"malformed request: {error}")))
        self.forget(sid)
        self.refused.add(sid)  # what h2 reports of it in this batch is dropped
        self.reset_now.add(sid)
        try:
            self.conn.reset_stream(sid, ErrorCodes.PROTOCOL_ERROR)
        except h2.exceptions.StreamClosedError:
            pass
        if self.floods.resets.hit(now):
            out += self.goaway(ErrorCodes.ENHANCE_YOUR_CALM, "malformed streams (MadeYouReset)")
            return True
        return False

    def request(
        self, event: h2.events.RequestReceived, out: list[tuple[int, H2Event]], now: float
    ) -> None:
        sid = event.stream_id
        if self.draining and sid > self.last_stream_id:
            # Opened after our GOAWAY: never processed, safe to retry (RFC 9113 §6.8).
            self.conn.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            self.refused.add(sid)  # what h2 still reports of it is dropped
            return
        try:
            head = request_head(event.headers or [], self.limits)  # type: ignore[arg-type]
        except Malformed as error:
            self.malformed(sid, error, now, out)
            return
        except ProtocolError as error:
            self.refuse(sid, error, out)
            return
        length = head.content_length
        if length is not None and length > self.limits.max_body_bytes:
            self.refuse(sid, ProtocolError("Content Too Large", 413), out)
            return
        if event.stream_ended is None and length is None:
            head.chunked = True  # a body of unknown length follows: has_body says so
        out.append((sid, head))  # its EndOfMessage comes with h2's StreamEnded
        if event.stream_ended is None:
            self.received[sid] = 0

    def refuse(self, sid: int, error: ProtocolError, out: list[tuple[int, H2Event]]) -> None:
        """The stream is answered with ``error.status``; body bytes it still sends are dropped."""
        self.refused.add(sid)
        out.append((sid, error))

    def body(self, event: h2.events.DataReceived, out: list[tuple[int, H2Event]]) -> None:
        sid = event.stream_id
        size = event.flow_controlled_length or 0
        # The reactor keeps the whole body (spooled to disk past --spool-threshold) before the
        # app runs, as for HTTP/1.1: the window reopens at once; --max-body bounds it.
        if size:
            try:
                self.conn.acknowledge_received_data(size, sid)
            except h2.exceptions.StreamClosedError:
                pass  # reset meanwhile: the connection window was credited by h2 already
        if sid in self.refused:
            return
        total = self.received.get(sid, 0) + len(event.data or b"")
        if total > self.limits.max_body_bytes:
            self.refuse(sid, ProtocolError("Content Too Large", 413), out)
            return
        self.received[sid] = total
        if event.data:
            out.append((sid, Data(event.data)))

    # -- outgoing -------------------------------------------------------------------

    def send_head(
        self, sid: int, status: int, headers: list[tuple[bytes, bytes]], end_stream: bool
    ) -> None:
        if self.ended or sid not in self.conn.streams:
            return
        try:
            self.conn.send_headers(sid, [(b":status", b"%d" % status), *headers], end_stream)
        except h2.exceptions.StreamClosedError:
            self.forget(sid)
            return
        if end_stream:
            self.finish_request(sid)

    def send_whole(self, sid: int, data: bytes) -> None:
        """A response's whole body after its head: framed at once when the windows take
        it in one frame (the common small response), else queued as ``send_body`` does."""
        if self.ended or sid in self.pending:
            self.send_body(sid, data, end_stream=True)
            return
        conn = self.conn
        if len(data) > min(conn.max_outbound_frame_size, conn.outbound_flow_control_window):
            self.send_body(sid, data, end_stream=True)
            return
        try:
            if len(data) > conn.local_flow_control_window(sid):
                self.send_body(sid, data, end_stream=True)
                return
            conn.send_data(sid, data, end_stream=True)
        except h2.exceptions.StreamClosedError:
            self.forget(sid)  # reset meanwhile
            return
        self.sent_bytes += len(data)
        self.finish_request(sid)

    def send_body(self, sid: int, data: bytes, end_stream: bool) -> None:
        """Queue response bytes; they leave as the windows allow (call ``pump``)."""
        if self.ended:
            return
        outgoing = self.pending.get(sid)
        if outgoing is None:
            outgoing = self.pending[sid] = _Outgoing()
        if data:
            outgoing.chunks.append(data)
            outgoing.size += len(data)
        outgoing.end = outgoing.end or end_stream

    def buffered(self, sid: int) -> int:
        outgoing = self.pending.get(sid)
        return 0 if outgoing is None else outgoing.size

    def pump(self) -> list[int]:
        """Frame what the flow-control windows allow, round robin, one frame per stream per
        turn; returns the streams whose response was fully sent."""
        done: list[int] = []
        conn = self.conn
        if self.ended:
            return done
        frame_max = conn.max_outbound_frame_size
        while self.pending and conn.outbound_flow_control_window > 0:
            progress = False
            for sid, outgoing in list(self.pending.items()):
                if sid not in conn.streams:
                    del self.pending[sid]  # reset meanwhile
                    continue
                if outgoing.chunks:
                    room = min(conn.local_flow_control_window(sid), frame_max)
                    if room <= 0:
                        continue
                    chunk = outgoing.chunks.popleft()
                    if len(chunk) > room:
                        outgoing.chunks.appendleft(chunk[room:])
                        chunk = chunk[:room]
                    outgoing.size -= len(chunk)
                    last = outgoing.end and not outgoing.chunks
                    conn.send_data(sid, chunk, end_stream=last)
                    self.sent_bytes += len(chunk)
                    progress = True
                elif outgoing.end:
                    conn.end_stream(sid)
                    last = True
                else:
                    continue
                if last:
                    del self.pending[sid]
                    self.finish_request(sid)
                    done.append(sid)
                if conn.outbound_flow_control_window <= 0:
                    break
            if not progress:
                break
        # Streams ended with nothing left to send (END_STREAM needs no window).
        for sid, outgoing in list(self.pending.items()):
            if outgoing.end and not outgoing.chunks and sid in conn.streams:
                conn.end_stream(sid)
                del self.pending[sid]
                self.finish_request(sid)
                done.append(sid)
        return done

    def finish_request(self, sid: int) -> None:
        """The response is complete; a request still sending its body is told to stop.

        RFC 9113 §8.1: a server may answer before the request is whole, then reset the
        stream with NO_ERROR so the client stops sending.
        """
        self.refused.discard(sid)
        stream = self.conn.streams.get(sid)
        if stream is not None and not stream.closed:
            try:
                self.conn.reset_stream(sid, ErrorCodes.NO_ERROR)
            except h2.exceptions.StreamClosedError:
                pass
        self.received.pop(sid, None)

    def reset(self, sid: int, code: int = ErrorCodes.INTERNAL_ERROR) -> None:
        """End a stream whose response cannot be completed (the app failed midway)."""
        self.forget(sid)
        if self.ended:
            return
        try:
            self.conn.reset_stream(sid, code)
        except h2.exceptions.StreamClosedError:
            pass

    def forget(self, sid: int) -> None:
        self.pending.pop(sid, None)
        self.received.pop(sid, None)
        self.refused.discard(sid)

    def goaway(self, code: int, reason: str) -> list[tuple[int, H2Event]]:
        """End the connection with GOAWAY ``code``: streams past the last one are unprocessed."""
        if not self.ended:
            self.ended = True
            self.conn.close_connection(code, reason.encode("utf-8", "replace")[:100])
        return [(0, ConnectionEnded(reason))]

    def drain(self) -> None:
        """Graceful GOAWAY (RFC 9113 §6.8): streams already started finish, no new ones."""
        if self.ended or self.draining:
            return
        self.draining = True
        # Framed here, not by h2: h2's close_connection() would refuse to send anything
        # more, and the streams already started must still be answered.
        self.last_stream_id = self.conn.highest_inbound_stream_id
        self.early += self.conn.data_to_send() + goaway_frame(
            self.last_stream_id, ErrorCodes.NO_ERROR
        )

    @property
    def open_streams(self) -> int:
        return self.conn.open_inbound_streams

    def data_to_send(self) -> bytes:
        if self.early:
            data, self.early = self.early + self.conn.data_to_send(), b""
            return data
        return self.conn.data_to_send()
