"""Every private Django attribute treadle relies on, checked once, with the public path as fallback.

Composition layer (the Django side). Two uses reach past Django's public API; when the
installed Django no longer has what one needs, treadle takes the public path and logs ONE
warning saying what changes, instead of failing inside a request:

- ``raw_setting``: ``settings._wrapped``, the settings object behind ``LazySettings``. It
  holds STATIC_URL/MEDIA_URL as written, before LazySettings prefixes a relative one with
  the script prefix of whichever thread reads it first. Fallback: the public
  ``getattr(settings, name)`` (already prefixed: fine when --script-name is empty).
- ``mark_logged``: ``response._has_been_logged``, which ``django.utils.log.log_response``
  reads to skip a response it should not log (the 499 for a client that went away).
  Fallback: the mark is still set, and Django logs a warning line per such response.

Nothing else in treadle may touch an underscore attribute of a Django object.
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any

log = logging.getLogger("treadle")

_warned: set[str] = set()


def warn_once(what: str, fallback: str) -> None:
    """Log one warning per missing internal and process."""
    if what in _warned:
        return
    _warned.add(what)
    import django

    log.warning("Django %s: %s; %s", django.get_version(), what, fallback)


def raw_setting(settings: Any, name: str) -> Any:
    """Setting ``name`` as the settings module wrote it (None if unset). Any thread."""
    wrapped = getattr(settings, "_wrapped", None)
    if wrapped is None:
        warn_once(
            "settings._wrapped is gone",
            f"reading {name} through LazySettings, with the first reader's script prefix",
        )
        return getattr(settings, name, None)
    return getattr(wrapped, name, None)


def log_response_honours_mark(log_response: Any) -> bool:
    """Does ``log_response`` (Django's) skip a response marked ``_has_been_logged``?"""
    try:
        return "_has_been_logged" in inspect.getsource(log_response)
    except (OSError, TypeError):  # no source (a frozen build): assume it does, as 4.2-6.x
        return True


@functools.cache
def _installed_honours_mark() -> bool:
    from django.utils.log import log_response

    return log_response_honours_mark(log_response)


def mark_logged(response: Any, log_response: Any = None) -> None:
    """Tell Django's request logging that ``response`` needs no log line of its own.

    ``log_response`` is Django's unless a test passes another; the check runs once."""
    if log_response is None:
        honoured = _installed_honours_mark()
    else:
        honoured = log_response_honours_mark(log_response)
    if not honoured:
        warn_once(
            "log_response no longer reads response._has_been_logged",
            "Django logs each 499 (client went away) as a warning",
        )
    response._has_been_logged = True
