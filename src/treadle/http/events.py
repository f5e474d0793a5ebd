"""Events that the protocol cores (HTTP/1.1, later HTTP/2 and Mongrel2) produce.

Pure layer: plain data, no I/O. Everything downstream of a parser (dispatch, static
files, the WSGI container) sees only these, never a parser or a transport.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class RequestHead:
    """A parsed request line and header block.

    ``headers`` keeps the field names as received (bytes, original case) and in
    order; ``target`` is the undecoded request-target. ``path`` and ``query`` are
    split from it (still percent-encoded); for absolute-form targets
    (``GET http://host/x``) ``path`` is the path part and ``authority`` the host.
    """

    method: bytes
    target: bytes
    path: bytes
    query: bytes
    http_version: str  # "1.0" or "1.1" ("2" for HTTP/2)
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool = True
    expect_continue: bool = False
    content_length: int | None = None
    chunked: bool = False
    authority: bytes | None = None  # from an absolute-form target or :authority

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower-case bytes), or None."""
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


@dataclass(slots=True)
class Data:
    """A piece of the request body, de-chunked."""

    data: bytes


@dataclass(slots=True)
class EndOfMessage:
    """The request body (possibly empty) is complete."""

    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)


Event = RequestHead | Data | EndOfMessage
