"""Reopens treadle's log files after logrotate moved them (SIGUSR1).

Composition layer: touches only ``logging`` handlers, in whichever process got the signal.
It never creates a handler; a stream that is not a file (stderr) is left alone.
"""

from __future__ import annotations

import logging

LOGGERS = ("treadle", "treadle.access", "twisted", "")


def reopen() -> int:
    """Reopen the files of treadle's loggers: a handler with a ``reopen()`` method is asked
    to; a FileHandler's stream is closed and opened again on the next record
    (FileHandler.emit reopens a closed stream). Returns how many handlers were reopened."""
    seen: set[int] = set()
    for name in LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if id(handler) in seen:
                continue
            own_reopen = getattr(handler, "reopen", None)  # a handler that knows how (its
            if callable(own_reopen):  # stream belongs to a writer thread, say)
                seen.add(id(handler))
                own_reopen()
            elif isinstance(handler, logging.FileHandler):
                seen.add(id(handler))
                handler.acquire()
                try:
                    if handler.stream is not None:
                        handler.stream.close()
                        handler.stream = None  # type: ignore[assignment]
                finally:
                    handler.release()
    return len(seen)
