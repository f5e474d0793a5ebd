"""Sets up treadle's Python logging: the ``treadle`` logger and ``treadle.access``.

Composition layer, called once by an entry point. Twisted's own log events are
forwarded to the ``twisted`` Python logger (warnings and errors only), so one
logging configuration (or Django's settings.LOGGING) routes everything. It never
touches the root logger's handlers when a framework has configured them. Access-log
lines are written by a thread of their own: a slow disk or a pipe nobody reads must
not stall the reactor, which only queues them (and drops and counts them when full).
"""

from __future__ import annotations

import atexit
import logging
import queue
import sys
import threading
from collections.abc import Callable

from twisted.logger import LogLevel, STDLibLogObserver, globalLogBeginner

from treadle.config import Config

FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"

# TREADLE_DEBUG=1..5, as the Django issue asks: 5 is DEBUG plus per-request traces.
DEBUG_LEVELS = {1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO, 4: logging.DEBUG, 5: 5}


def _twisted_observer(event: dict) -> None:
    level = event.get("log_level")
    if level in (LogLevel.warn, LogLevel.error, LogLevel.critical) or event.get("isError"):
        _stdlib(event)


_stdlib = STDLibLogObserver(name="twisted")


ACCESS_QUEUE_LINES = 10_000  # about 2 MB of lines; a second or two of a busy server's log


class AccessLogWriter(logging.Handler):
    """Queues records for a writer thread that writes their lines with ``write``; never blocks.

    ``emit`` is called in the reactor thread. When ``max_lines`` wait already, the record is
    dropped and counted (with a warning at the 1st, 10th, 100th... drop). The target is a
    plain write function, not a logging handler: at exit ``logging.shutdown`` flushes every
    handler, and one stuck on a full pipe would hang the process there.
    """

    def __init__(self, write: Callable[[str], object], max_lines: int = ACCESS_QUEUE_LINES) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))
        self._write_line = write
        self._reopen_wanted = False
        self.dropped = 0
        self._reported = 0
        self._queue: queue.Queue[logging.LogRecord | None] = queue.Queue(max_lines)
        self._thread = threading.Thread(target=self._write, name="treadle-access-log", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        """Called in the reactor thread (any thread that logs an access line)."""
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            dropped = self.dropped
            if dropped == 10 ** (len(str(dropped)) - 1):  # 1, 10, 100...: a bounded trail
                logging.getLogger("treadle").warning(
                    "access log: %d lines dropped so far; its file or pipe is not keeping up",
                    dropped,
                )

    def _write(self) -> None:
        """The writer thread: write lines in order until close() asks it to stop."""
        while True:
            record = self._queue.get()
            if record is None:
                return
            try:
                if self._reopen_wanted:
                    self._reopen_wanted = False
                    reopen = getattr(self._write_line, "reopen", None)
                    if reopen is not None:
                        reopen()
                self._write_line(self.format(record) + "\n")
            except Exception:  # noqa: BLE001 - a full disk must not end the thread
                self.handleError(record)
            dropped = self.dropped
            if dropped != self._reported and self._queue.empty():
                logging.getLogger("treadle").warning(
                    "access log: %d lines were dropped; it has caught up",
                    dropped - self._reported,
                )
                self._reported = dropped

    def reopen(self) -> None:
        """After logrotate moved the file (SIGUSR1): the writer thread opens it again before
        its next line, so the file is only ever touched by that thread. Any thread."""
        self._reopen_wanted = True

    def close(self, timeout_s: float = 2.0) -> None:
        """Called at exit: write what is queued, waiting at most ``timeout_s`` for a slow target."""
        try:
            self._queue.put(None, timeout=timeout_s)
            self._thread.join(timeout_s)
        except queue.Full:
            # The target is stuck: the lines still queued are lost with the process.
            logging.getLogger("treadle").warning(
                "access log: %d lines not written at exit", self._queue.qsize()
            )
        super().close()


def _line_writer(target: str) -> Callable[[str], object]:
    """``-`` (stderr) or a path -> a function that writes one line. Called once, at start."""
    if target == "-":

        def write_stderr(line: str) -> None:
            sys.stderr.write(line)
            sys.stderr.flush()

        return write_stderr
    return FileLines(target)


class FileLines:
    """Writes lines to a file path, and opens the path again on ``reopen()`` (logrotate).

    Unbuffered: each line is one write(2), appended whole (O_APPEND), so nothing is held in
    a buffer that the interpreter would try to flush at exit. Used by the writer thread only.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.stream = open(path, "ab", buffering=0)  # noqa: SIM115 - lives with the process

    def __call__(self, line: str) -> None:
        self.stream.write(line.encode("utf-8", "backslashreplace"))

    def reopen(self) -> None:
        old, self.stream = self.stream, open(self.path, "ab", buffering=0)  # noqa: SIM115
        old.close()


def configure(config: Config, *, own_handlers: bool = True) -> None:
    """own_handlers=False leaves handlers to the framework (Django's LOGGING)."""
    logger = logging.getLogger("treadle")
    settings = config.logging
    level = getattr(logging, settings.log_level.upper())
    logger.setLevel(level)
    if own_handlers or settings.log_file:
        handler: logging.Handler
        if settings.log_file:
            handler = logging.FileHandler(settings.log_file)
        else:
            handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT, "%Y-%m-%d %H:%M:%S %z"))
        logger.handlers = [handler]
        logger.propagate = not settings.log_file and not own_handlers
    access = logging.getLogger("treadle.access")
    if settings.access_log:
        access.setLevel(logging.INFO)
        writer = AccessLogWriter(_line_writer(settings.access_log))
        atexit.register(writer.close)
        access.handlers = [writer]
        access.propagate = False
    twisted_logger = logging.getLogger("twisted")
    if own_handlers and not twisted_logger.handlers:
        twisted_logger.handlers = logger.handlers
        twisted_logger.propagate = False
    globalLogBeginner.beginLoggingTo(
        [_twisted_observer],  # type: ignore[list-item]
        redirectStandardIO=False,
    )
