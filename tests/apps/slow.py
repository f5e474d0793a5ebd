"""Sleeps for ?s=SECONDS (default 1) before answering; logs when it starts and ends."""

import logging
import time

log = logging.getLogger("treadle")


def app(environ, start_response):
    query = dict(p.split("=", 1) for p in environ["QUERY_STRING"].split("&") if "=" in p)
    seconds = float(query.get("s", "1"))
    log.warning("slow app start %s", environ["PATH_INFO"])
    time.sleep(seconds)
    log.warning("slow app end %s", environ["PATH_INFO"])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"done after %.2f\n" % seconds]
