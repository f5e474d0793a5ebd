"""Reopens treadle's log files after logrotate moved them (SIGUSR1).

Composition layer: touches only ``logging`` handlers, in whichever process got the signal.
It never creates a handler; a stream that is not a file (stderr) is left alone.
"""

from __future__ import annotations

import logging

LOGGERS = ("treadle", "treadle.access", "twisted", "")


def reopen() -> int:
    """Close every FileHandler of treadle's loggers; each opens its path again on the next
    record (FileHandler.emit reopens a closed stream). Returns how many were closed."""
    seen: set[int] = set()
    for name in LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.FileHandler) and id(handler) not in seen:
                seen.add(id(handler))
                handler.acquire()
                try:
                    if handler.stream is not None:
                        handler.stream.close()
                        handler.stream = None  # type: ignore[assignment]
                finally:
                    handler.release()
    return len(seen)
