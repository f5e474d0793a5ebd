"""Sets up treadle's Python logging: the ``treadle`` logger and ``treadle.access``.

Composition layer, called once by an entry point. Twisted's own log events are
forwarded to the ``twisted`` Python logger (warnings and errors only), so one
logging configuration (or Django's settings.LOGGING) routes everything. It never
touches the root logger's handlers when a framework has configured them.
"""

from __future__ import annotations

import logging
import sys

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
        target = settings.access_log
        access_handler: logging.Handler = (
            logging.StreamHandler(sys.stderr) if target == "-" else logging.FileHandler(target)
        )
        access_handler.setFormatter(logging.Formatter("%(message)s"))
        access.handlers = [access_handler]
        access.propagate = False
    twisted_logger = logging.getLogger("twisted")
    if own_handlers and not twisted_logger.handlers:
        twisted_logger.handlers = logger.handlers
        twisted_logger.propagate = False
    globalLogBeginner.beginLoggingTo(
        [_twisted_observer],  # type: ignore[list-item]
        redirectStandardIO=False,
    )
