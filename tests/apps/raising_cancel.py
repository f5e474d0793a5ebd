"""Apps whose cancellation hooks raise: a token callback, and a Deferred's canceller."""

import logging

import treadle

log = logging.getLogger("treadle")


def _broken(reason):
    raise RuntimeError(f"broken cancel callback ({reason})")


def app(environ, start_response):
    if environ["PATH_INFO"] == "/callback":
        token = environ["treadle.cancelled"]
        token.add_callback(_broken)
        log.warning("waiting on the token")
        log.warning("token set=%s", token.wait(30))
    else:

        def never():
            from twisted.internet import defer

            def canceller(_deferred):
                raise RuntimeError("broken canceller")

            log.warning("waiting on the deferred")  # in the reactor, once it exists
            return defer.Deferred(canceller)

        try:
            treadle.wait(never, timeout=30)
        except treadle.RequestCancelled as error:
            log.warning("wait ended: %s", type(error).__name__)
            raise
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"done\n"]
