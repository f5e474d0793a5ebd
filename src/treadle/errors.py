"""Every exception treadle raises, in one hierarchy.

Pure layer: no I/O, no Twisted. A ProtocolError carries the HTTP status to answer
with (as h11's error_status_hint does), so the code that catches it needs no table.
"""

from __future__ import annotations


class TreadleError(Exception):
    """Base of every treadle exception."""


class ProtocolError(TreadleError):
    """The peer broke HTTP; answer with ``status`` and close the connection."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class ConfigError(TreadleError):
    """A setting has a value treadle cannot use."""


class AppLoadError(TreadleError):
    """The WSGI target could not be imported or is not callable."""


class RequestCancelled(TreadleError):
    """The request was cancelled: the client went away or it ran past its timeout."""


class WaitTimeout(TreadleError):
    """``treadle.wait`` gave up after its timeout; the awaited Deferred was cancelled."""


class NotInAppThread(TreadleError):
    """``treadle.wait``/``treadle.call`` was used where it would deadlock or has no reactor."""
