"""What an exchange needs from the connection it runs on: a small interface, no code.

Reactor layer, typing only. http/exchange.py talks to its connection through this
Protocol and never imports or writes the connection's fields; http/protocol.py's
HTTPChannel implements it for HTTP/1.1, and an HTTP/2 stream can implement it too.
Must not import Twisted or any transport.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from treadle.http.exchange import Exchange


class Connection(Protocol):
    """Called by an exchange in the reactor thread."""

    scheme: str  # "http" or "https"
    local: tuple[str, int] | None  # (host, port), None on a unix socket
    peer: tuple[str, int] | None
    tls_environ: dict[str, str] | None  # SSL_* keys for the environ over TLS (docs/tls.md)

    @property
    def date(self) -> bytes:
        """The Date header's value now (one per tick, shared)."""

    @property
    def draining(self) -> bool:
        """True once the server stops: responses say Connection: close."""

    @property
    def sending_paused(self) -> bool:
        """True while the client is not taking what is sent (flow control)."""

    def new_record(self, method: str, target: str, started: float) -> Any:
        """The request's RequestRecord (timings, cancel token); made by the thread bridge's
        type, handed in by the composition root, so the reactor side never imports it."""

    def send(self, data: bytes) -> None:
        """Bytes of the response, in order."""

    def start_app(self, exchange: Exchange) -> None:
        """The request is whole (head and body): hand it to the dispatcher."""

    def response_handed_over(self) -> None:
        """The app's work is over (a file streamed by the reactor): stop its timer."""

    def exchange_done(self, exchange: Exchange, keep_alive: bool) -> None:
        """The response is complete; the connection may carry on or close."""

    def abort_exchange(self, exchange: Exchange) -> None:
        """The response cannot be completed: drop the connection at once."""

    def exchange_finished(self, exchange: Exchange) -> None:
        """The exchange ended in any way (answered, aborted, client gone): for logs, stats."""
