"""Test-only views of checksite.

wait_for_exit logs that it started, then waits in treadle.wait on a Deferred that never
fires: only the client going away (RequestCancelled) or the 30 s timeout ends it.
"""

import logging

from django.http import HttpRequest, HttpResponse
from twisted.internet.defer import Deferred

import treadle

log = logging.getLogger("checksite")


def wait_for_exit(request: HttpRequest) -> HttpResponse:
    log.info("view started: %s", request.path)
    treadle.wait(Deferred, timeout=30)  # called in the reactor: a Deferred nobody fires
    return HttpResponse("the client stayed\n", content_type="text/plain")
