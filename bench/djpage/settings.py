"""Django settings of the one-page benchmark project (bench/djpage).

Benchmark fixture, not a template for real deployments (fixed SECRET_KEY).
"""

from pathlib import Path

SECRET_KEY = "bench-only-not-secret"  # noqa: S105 - local benchmark fixture
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS: list[str] = []
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "bench.djpage.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [str(Path(__file__).resolve().parent / "templates")],
        "OPTIONS": {"context_processors": []},
    }
]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
LOGGING_CONFIG = None
