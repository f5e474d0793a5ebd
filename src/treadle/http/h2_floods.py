"""HTTP/2 flood accounting from frame headers: the defences h2 does not have, or has late.

Pure layer: bytes and a time passed in; no I/O. It reads only each frame's 9-byte header
(RFC 9113 §4.1) as the bytes arrive, before h2 parses them, and names the flood once a
client passes a limit; the session then ends the connection with GOAWAY ENHANCE_YOUR_CALM.
It must not parse payloads or hold more than one partial frame header.
"""

from __future__ import annotations

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # RFC 9113 §3.4

# Frame types (RFC 9113 §6) and the flags the flood counters read.
_DATA, _HEADERS, _PRIORITY, _RST_STREAM, _SETTINGS, _PING, _CONTINUATION = 0, 1, 2, 3, 4, 6, 9
_END_STREAM, _ACK, _END_HEADERS = 0x1, 0x1, 0x4

# Per connection, per FLOOD_WINDOW_S: how many of each frame a client may send before it
# is taken for an attacker. Browsers send a SETTINGS or two and rare PINGs; nothing sends
# empty non-final DATA frames on purpose (CVE-2019-9518), pings that must all be answered
# (CVE-2019-9512) or SETTINGS to acknowledge (CVE-2019-9515) by the hundred.
FLOOD_WINDOW_S = 10.0
MAX_PINGS = 100
MAX_SETTINGS = 100
MAX_EMPTY_DATA = 100
MAX_PRIORITY = 1000  # CVE-2019-9513: cheap for us (h2 keeps no tree), still bounded


class _Counter:
    """Events in a fixed window of time: ``hit`` is True once past ``limit``."""

    __slots__ = ("limit", "count", "since")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.since = 0.0

    def hit(self, now: float) -> bool:
        if now - self.since >= FLOOD_WINDOW_S:
            self.since = now
            self.count = 0
        self.count += 1
        return self.count > self.limit


class FloodGuard:
    """One connection's counters. ``scan`` is called with every received chunk, in order."""

    def __init__(self, max_concurrent_streams: int, max_header_list_bytes: int) -> None:
        self.resets = _Counter(2 * max_concurrent_streams)
        self.pings = _Counter(MAX_PINGS)
        self.settings = _Counter(MAX_SETTINGS)
        self.empty_data = _Counter(MAX_EMPTY_DATA)
        self.priorities = _Counter(MAX_PRIORITY)
        # Compressed bytes are never many more than the decoded list (RFC 7541 §5); the
        # slack lets a legitimate block with padding through.
        self.max_block_bytes = max_header_list_bytes + 16 * 1024
        # The client's preface comes first (after a 101 too): skipped.
        self._skip = len(PREFACE)
        self._frame_head = b""
        self._payload_left = 0
        self._block_bytes = 0  # header block bytes so far (HEADERS + CONTINUATION)

    def scan(self, data: bytes, now: float) -> str | None:
        """Read the frame headers in ``data``: the name of a flood, or None.

        h2 buffers a header block's CONTINUATION frames until the last one (CVE-2024-27316
        and kin); the block is capped here at the header list size we advertise, before h2
        holds it. The other counters are per FLOOD_WINDOW_S (see the constants).
        """
        view = memoryview(data)
        at = 0
        end = len(view)
        if self._skip:
            taken = min(self._skip, end)
            self._skip -= taken
            at = taken
        while at < end:
            if self._payload_left:
                taken = min(self._payload_left, end - at)
                self._payload_left -= taken
                at += taken
                continue
            need = 9 - len(self._frame_head)
            self._frame_head += bytes(view[at : at + need])
            at += min(need, end - at)
            if len(self._frame_head) < 9:
                break
            head, self._frame_head = self._frame_head, b""
            length = int.from_bytes(head[0:3], "big")
            kind, flags = head[3], head[4]
            self._payload_left = length
            flood = self.count(kind, flags, length, now)
            if flood is not None:
                return flood
        return None

    def count(self, kind: int, flags: int, length: int, now: float) -> str | None:
        if kind == _HEADERS:
            self._block_bytes = length
        elif kind == _CONTINUATION:
            self._block_bytes += length
        if kind in (_HEADERS, _CONTINUATION):
            if self._block_bytes > self.max_block_bytes:
                return "header block (CONTINUATION flood)"
            return None
        if kind == _RST_STREAM:
            # CVE-2023-44487: each reset stream cost a request's setup; resets past twice the
            # stream limit in a window are an attack, not a browser cancelling images.
            return "stream resets (rapid reset)" if self.resets.hit(now) else None
        if kind == _PING and not flags & _ACK:
            return "PING frames" if self.pings.hit(now) else None
        if kind == _SETTINGS and not flags & _ACK:
            return "SETTINGS frames" if self.settings.hit(now) else None
        if kind == _DATA and length == 0 and not flags & _END_STREAM:
            return "empty DATA frames" if self.empty_data.hit(now) else None
        if kind == _PRIORITY:
            return "PRIORITY frames" if self.priorities.hit(now) else None
        return None
