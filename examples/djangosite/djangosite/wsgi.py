"""WSGI entry point for the example site: ``djangosite.wsgi:application``.

Any WSGI server can load it (``treadle djangosite.wsgi:application``); it must not
do more than build the Django application.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djangosite.settings")

application = get_wsgi_application()
