"""An app that waits on the reactor with treadle.wait (deferLater), then answers."""

import treadle


def _sleep(seconds):
    from twisted.internet import reactor, task

    return task.deferLater(reactor, seconds, lambda: b"slept")


def app(environ, start_response):
    query = dict(p.split("=", 1) for p in environ["QUERY_STRING"].split("&") if "=" in p)
    seconds = float(query.get("s", "0.2"))
    body = treadle.wait(lambda: _sleep(seconds), timeout=10)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body + b"\n"]


class _Body:
    def __init__(self, chunks):
        self.chunks = chunks

    def __iter__(self):
        return iter(self.chunks)

    def close(self):
        import logging

        logging.getLogger("treadle").warning("forever body closed")


def forever(environ, start_response):
    import logging

    from twisted.internet import defer

    log = logging.getLogger("treadle")

    def never():
        log.warning("forever deferred created")
        return defer.Deferred(lambda d: log.warning("forever deferred cancelled"))

    log.warning("forever waiting")
    try:
        treadle.wait(never)
    except treadle.RequestCancelled:
        log.warning("forever got RequestCancelled")
        raise
    start_response("200 OK", [])
    return _Body([b"unreachable"])


class _WaitingBody:
    """Yields one chunk, then waits on the reactor forever inside the iteration."""

    def __iter__(self):
        import logging

        from twisted.internet import defer

        log = logging.getLogger("treadle")
        yield b"first\n"

        def never():
            log.warning("stream deferred created")
            return defer.Deferred(lambda d: log.warning("stream deferred cancelled"))

        treadle.wait(never)
        yield b"unreachable\n"

    def close(self):
        import logging

        logging.getLogger("treadle").warning("stream body closed")


def forever_stream(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return _WaitingBody()
