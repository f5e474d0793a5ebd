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
