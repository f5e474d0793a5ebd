"""WSGI entry point of the benchmark page project: ``bench.djpage.wsgi:application``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.djpage.settings")
application = get_wsgi_application()
