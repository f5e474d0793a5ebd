"""Pages that call Twisted from a Django view with ``treadle.wait``.

The view runs in a treadle app thread; ``treadle.wait(work, timeout=...)`` runs ``work`` in
the reactor thread and blocks this thread until its Deferred or coroutine finishes.
treadle is imported lazily, inside the calls, so the site still loads under any server;
there these pages answer 503 and say how to start treadle.
"""

import time
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

SLEEP_S = 0.1
FETCH_TIMEOUT_S = 5.0
# Longer than the fetch's own timeout so treq's error, not ours, explains a slow fetch.
WAIT_TIMEOUT_S = 10.0


class ReactorUnavailable(Exception):
    """treadle.wait could not run the work; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def wait_in_reactor(work: Callable[[], Any], timeout_s: float) -> Any:
    """Run ``work`` in the reactor with treadle.wait and return its result.

    Called in an app thread. Raises ReactorUnavailable (503) when this process is not
    served by treadle, and (504) when the reactor did not answer within ``timeout_s``.
    """
    try:
        from treadle import wait
        from treadle.errors import NotInAppThread, WaitTimeout
    except ImportError as exc:
        raise ReactorUnavailable(f"treadle.wait is not available here ({exc}).", 503) from exc
    try:
        return wait(work, timeout=timeout_s)
    except NotInAppThread as exc:
        raise ReactorUnavailable(f"Not running in a treadle app thread ({exc}).", 503) from exc
    except WaitTimeout as exc:
        raise ReactorUnavailable(f"The reactor did not answer in {timeout_s:g} s.", 504) from exc


def sleep_in_reactor() -> Any:
    """Called in the reactor thread: a Deferred that fires with "slept" after SLEEP_S."""
    from twisted.internet import reactor, task

    return task.deferLater(reactor, SLEEP_S, lambda: "slept")


async def fetch_json(url: str) -> tuple[int, Any]:
    """Runs in the reactor thread: GET ``url`` with treq, return (status, decoded JSON)."""
    import treq

    # persistent=False: this is a request to ourselves; leave no idle keep-alive behind.
    response = await treq.get(url, timeout=FETCH_TIMEOUT_S, persistent=False)
    payload = await treq.json_content(response)
    return response.code, payload


def unavailable(request: HttpRequest, title: str, error: ReactorUnavailable) -> HttpResponse:
    # 503 means "not under treadle" (see wait_in_reactor); other statuses are real failures.
    context = {"title": title, "error": str(error), "needs_treadle": error.status == 503}
    return render(request, "library/reactor_result.html", context, status=error.status)


@require_GET
def twisted_sleep(request: HttpRequest) -> HttpResponse:
    title = "treadle.wait: deferLater"
    started = time.monotonic()
    try:
        result = wait_in_reactor(sleep_in_reactor, WAIT_TIMEOUT_S)
    except ReactorUnavailable as error:
        return unavailable(request, title, error)
    context = {
        "title": title,
        "call": f"task.deferLater(reactor, {SLEEP_S}, lambda: 'slept')",
        "result": result,
        "elapsed_ms": (time.monotonic() - started) * 1000,
    }
    return render(request, "library/reactor_result.html", context)


@require_GET
def twisted_fetch(request: HttpRequest) -> HttpResponse:
    from twisted.internet.defer import CancelledError
    from twisted.internet.error import ConnectError
    from twisted.web.client import ResponseFailed, ResponseNeverReceived

    title = "treadle.wait: treq.get"
    # This site's own JSON endpoint, on the host and port this request came in on.
    url = request.build_absolute_uri(reverse("books-json"))
    started = time.monotonic()
    try:
        status, payload = wait_in_reactor(lambda: fetch_json(url), WAIT_TIMEOUT_S)
    except ReactorUnavailable as error:
        return unavailable(request, title, error)
    except (ConnectError, ResponseFailed, ResponseNeverReceived, CancelledError) as exc:
        error = ReactorUnavailable(f"GET {url} failed: {exc!r}", 502)
        return unavailable(request, title, error)
    except ValueError as exc:
        return unavailable(request, title, ReactorUnavailable(f"{url} sent bad JSON: {exc}", 502))
    context = {
        "title": title,
        "call": f"treq.get({url!r})",
        "result": f"HTTP {status}, {payload.get('count', 0)} books",
        "books": payload.get("books", []),
        "elapsed_ms": (time.monotonic() - started) * 1000,
    }
    return render(request, "library/reactor_result.html", context)
