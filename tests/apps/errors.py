"""Apps that fail: before the head, after the head, with a bad head, in close()."""

import logging

closed = []


def before_head(environ, start_response):
    raise RuntimeError("boom before head")


def after_head(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        yield b"partial"
        raise RuntimeError("boom after head")

    return body()


def bad_header(environ, start_response):
    start_response("200 OK", [("X-Bad", "line\r\nInjected: yes")])
    return [b"never"]


def no_start_response(environ, start_response):
    return [b"forgot"]


class ClosingBody:
    def __init__(self):
        self.items = [b"a", b"b"]

    def __iter__(self):
        return iter(self.items)

    def close(self):
        logging.getLogger("treadle").warning("ClosingBody.close called")


def with_close(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ClosingBody()
