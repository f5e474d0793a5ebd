"""Apps for cancellation: a polite one that watches its token, and a rude busy loop."""

import logging
import time

log = logging.getLogger("treadle")
calls = []


def polite(environ, start_response):
    token = environ["treadle.cancelled"]
    log.warning("polite start %s", environ["PATH_INFO"])
    cancelled = token.wait(30)
    log.warning("polite end %s cancelled=%s", environ["PATH_INFO"], cancelled)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"finished\n"]


def busy(environ, start_response):
    log.warning("busy start %s", environ["PATH_INFO"])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # ignores its cancel token on purpose
            pass
    except BaseException as error:
        log.warning("busy interrupted by %s", type(error).__name__)
        raise
    start_response("200 OK", [])
    return [b"never interrupted\n"]


def counting(environ, start_response):
    log.warning("counting app called %s", environ["PATH_INFO"])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]


def streaming(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        try:
            for index in range(100000):
                yield b"line %d\n" % index
                time.sleep(0.001)
        finally:
            log.warning("streaming closed cancelled=%s", environ["treadle.cancelled"].is_set())

    return body()
