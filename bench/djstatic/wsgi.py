"""WSGI entry point of the static benchmark project: `bench.djstatic.wsgi:application`.

Benchmark fixture; builds the static file first so the server can start from a clean checkout.
"""

import os

from django.core.wsgi import get_wsgi_application

from bench.djstatic import ensure_static_file

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.djstatic.settings")
ensure_static_file()
application = get_wsgi_application()
