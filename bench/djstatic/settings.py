"""Django settings for the static-file benchmark project: WhiteNoise in front of nothing.

Benchmark fixture; STATIC_ROOT points straight at the generated file's directory so no
collectstatic step is needed. Not a template for real deployments (fixed SECRET_KEY).
"""

from bench.djstatic import STATIC_DIR

SECRET_KEY = "bench-only-not-secret"  # noqa: S105 - local benchmark fixture
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["whitenoise.middleware.WhiteNoiseMiddleware"]
ROOT_URLCONF = "bench.djstatic.urls"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
STATIC_URL = "/static/"
STATIC_ROOT = str(STATIC_DIR)
LOGGING_CONFIG = None
