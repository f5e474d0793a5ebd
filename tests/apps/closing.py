"""A whole response (like Django's HttpResponse) whose close() blocks until /release is asked."""

import logging
import threading

log = logging.getLogger("treadle")
release = threading.Event()


class WholeBody:
    """Iterable with ``streaming = False`` and a close() that waits, as Django's can (signals)."""

    streaming = False

    def __init__(self, chunks: list[bytes], wait_s: float) -> None:
        self.chunks = chunks
        self.wait_s = wait_s

    def __iter__(self):
        return iter(self.chunks)

    def close(self) -> None:
        log.warning("close start")
        released = release.wait(self.wait_s)
        log.warning("close end released=%s", released)


def app(environ, start_response):
    if environ["PATH_INFO"] == "/release":
        release.set()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"released\n"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "18")])
    wait_s = float(environ["QUERY_STRING"].partition("wait=")[2] or 30)
    return WholeBody([b"sent before close\n"], wait_s)
