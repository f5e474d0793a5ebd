"""Django internals: used when the installed Django has them, else the public path and one
warning. Runs on the lowest declared Django and the newest (CI runs both)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

pytest.importorskip("django")

from django.conf import LazySettings  # noqa: E402
from django.urls import get_script_prefix, set_script_prefix  # noqa: E402
from django.utils.log import log_response  # noqa: E402

from treadle.django import internals  # noqa: E402


def warnings_of(caplog) -> list[str]:
    records = caplog.records
    return [r.getMessage() for r in records if r.name == "treadle" and r.levelno >= logging.WARNING]


@pytest.fixture
def script_prefix():
    saved = get_script_prefix()
    yield set_script_prefix
    set_script_prefix(saved)


def test_raw_setting_is_the_value_before_the_script_prefix(script_prefix, caplog) -> None:
    settings = LazySettings()
    settings.configure(STATIC_URL="static/")
    script_prefix("/app/")
    assert internals.raw_setting(settings, "STATIC_URL") == "static/"
    assert settings.STATIC_URL == "/app/static/"  # what the public path would have given
    assert internals.raw_setting(settings, "MEDIA_ROOT") == ""  # Django's default
    assert internals.raw_setting(settings, "NO_SUCH_SETTING") is None
    assert warnings_of(caplog) == []


def test_settings_without_the_wrapped_object_are_read_publicly_with_one_warning(caplog) -> None:
    settings = SimpleNamespace(STATIC_URL="/static/", MEDIA_URL="/media/")
    assert internals.raw_setting(settings, "STATIC_URL") == "/static/"
    assert internals.raw_setting(settings, "MEDIA_URL") == "/media/"
    (warning,) = warnings_of(caplog)
    assert "settings._wrapped" in warning


def test_a_marked_response_is_not_logged_by_django(caplog) -> None:
    gone = SimpleNamespace(status_code=499)
    internals.mark_logged(gone)
    unmarked = SimpleNamespace(status_code=499)
    with caplog.at_level(logging.INFO, logger="django.request"):
        log_response("Client Closed Request: %s", "/gone", response=gone, request=None)
        log_response("Client Closed Request: %s", "/other", response=unmarked, request=None)
    logged = [r.getMessage() for r in caplog.records if r.name == "django.request"]
    assert logged == ["Client Closed Request: /other"]
    assert warnings_of(caplog) == []


def test_a_django_that_ignores_the_mark_gets_one_warning(caplog) -> None:
    def log_response_without_the_mark(message, *args, response=None, request=None):
        logging.getLogger("django.request").warning(message, *args)

    for _ in range(3):
        internals.mark_logged(SimpleNamespace(status_code=499), log_response_without_the_mark)
    (warning,) = warnings_of(caplog)
    assert "_has_been_logged" in warning
