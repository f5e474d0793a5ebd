"""What the client gets when the app's status line cannot be a final response.

Reactor tier: the real channel and container on a StringTransport (see test_desync).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.unit.test_desync import Connection


@pytest.mark.parametrize("status", ["100 Continue", "101 Switching Protocols", "103 Early Hints"])
def test_an_interim_status_from_the_app_is_a_500_and_one_log_line(
    status: str, caplog: pytest.LogCaptureFixture
) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response(status, [("Content-Type", "text/plain")])
        return [b"body"]

    connection = Connection(app)
    with caplog.at_level(logging.INFO, logger="treadle"):
        connection.protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        connection.run_held()
    out = connection.transport.value()
    assert out.startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), out[:80]
    assert out.count(b"HTTP/1.1 ") == 1 and b"Connection: close" in out
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and status in errors[0].getMessage()
