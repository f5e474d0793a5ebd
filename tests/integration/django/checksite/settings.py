"""Settings for the Django integration tests: djangosite's, plus a TREADLE dict and LOGGING.

LOGGING sends the "treadle", "treadle.access", "django.request" and "checksite" loggers
to the file named by CHECKSITE_LOG_FILE, so a test can read what each of them said.
"""

import os

from djangosite.settings import *  # noqa: F403

ROOT_URLCONF = "checksite.urls"

# Defaults for `manage.py server`; flags and TREADLE_* variables override them.
TREADLE = {"threads": 3, "keep_alive_timeout_s": "7"}

LOG_FILE = os.environ["CHECKSITE_LOG_FILE"]
_TO_FILE = {"handlers": ["file"], "level": "INFO", "propagate": False}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "file": {"class": "logging.FileHandler", "filename": LOG_FILE, "formatter": "plain"},
    },
    "loggers": {
        "treadle": _TO_FILE,
        "treadle.access": _TO_FILE,
        "django.request": _TO_FILE,
        "checksite": _TO_FILE,
    },
}
