"""A streamed response in two parts with a pause between (so it cannot cross as one whole)."""

import treadle


def _pause(seconds):
    from twisted.internet import reactor, task

    return task.deferLater(reactor, seconds, lambda: None)


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        yield b"first\n"
        treadle.wait(lambda: _pause(0.2), timeout=10)
        yield b"second\n"

    return body()
