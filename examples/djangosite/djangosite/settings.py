"""Settings of the example Django site served by treadle.

Configuration only. Secrets and DEBUG come from the environment with defaults that are
safe on a developer's machine (DEBUG off, localhost-only hosts); set DJANGO_SECRET_KEY
before this site is ever reachable from another machine.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def env_flag(name: str, default: bool) -> bool:
    """Read a yes/no environment variable ("1", "true", "yes", "on" mean yes)."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str) -> list[str]:
    """Read a comma-separated environment variable, dropping empty items."""
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


# The default key is public (it is in this file): fine for localhost, never for a real site.
SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY", "django-insecure-treadle-example-only-for-local-development"
)

# Off by default so the demo shows what production sees: hashed static names from the
# manifest and plain error pages. DJANGO_DEBUG=1 turns on Django's debug pages.
DEBUG = env_flag("DJANGO_DEBUG", default=False)

# Django compares the Host header against these; "[::1]" is how an IPv6 loopback Host looks.
# DJANGO_ALLOWED_HOSTS="example.org,.example.net" extends the list.
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", *env_list("DJANGO_ALLOWED_HOSTS")]
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # treadle's Django app: adds `python manage.py server` (treadle in place of runserver).
    "treadle.django",
    "library",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "djangosite.urls"
WSGI_APPLICATION = "djangosite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Static files: `collectstatic` copies them to STATIC_ROOT with content-hashed names
# (ManifestStaticFilesStorage), which treadle can serve with long cache lifetimes.
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_URL = "/media/"
MEDIA_ROOT = BASE_DIR / "media"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
}

# Uploads: FILE_UPLOAD_MAX_MEMORY_SIZE keeps its default (2.5 MB); larger files go to a temp
# file, so /upload/ accepts 20 MiB and more. DATA_UPLOAD_MAX_MEMORY_SIZE limits only the
# non-file form fields.

# Logging: treadle logs under "treadle" (server events) and "treadle.access" (one line per
# request). Routing them here shows how; point them at any handler you like.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "loggers": {
        "treadle": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "treadle.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
