"""TreadleMiddleware: names the Django view on treadle's request record; quiet client exits.

Composition layer (Django integration); runs in treadle's app threads. ``manage.py server``
puts it first in MIDDLEWARE. Under another server it does nothing. It must not swallow
any exception but RequestCancelled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse

from treadle.cancel import current_request
from treadle.django import internals
from treadle.errors import RequestCancelled

log = logging.getLogger("treadle")

# nginx's "client closed request": the response is discarded, the status only shows in logs.
CLIENT_CLOSED = 499


def view_name(request: HttpRequest, view: Any = None) -> str:
    """The URL pattern's name ("admin:index"), else the view's dotted path, else "-"."""
    match = getattr(request, "resolver_match", None)
    if match is not None and match.view_name:
        return str(match.view_name)
    func = view if view is not None else getattr(match, "func", None)
    if func is None:
        return "-"
    func = getattr(func, "view_class", func)  # class-based views: name the class
    name = getattr(func, "__qualname__", None) or type(func).__qualname__
    return f"{getattr(func, '__module__', '?')}.{name}"


class TreadleMiddleware:
    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view_func: Any, view_args: Any, view_kwargs: Any
    ) -> None:
        """Called in the app thread before the view: record its name for stats and logs."""
        record = current_request()
        if record is not None:
            record.view = view_name(request, view_func)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """The client went away mid-view: one INFO line instead of Django's 500 and traceback."""
        if not isinstance(exception, RequestCancelled):
            return None
        log.info("client went away: %s %s", view_name(request), request.path)
        response = HttpResponse(status=CLIENT_CLOSED, reason="Client Closed Request")
        # Django's log_response skips responses marked so: nobody is there to read this one.
        internals.mark_logged(response)
        return response
