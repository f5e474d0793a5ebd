"""Root URLconf of the example site: the admin and the `library` app's pages.

Static files are not routed here: `manage.py server` (treadle) serves STATIC_ROOT
from the reactor, so no Python thread is spent on them.
"""

from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("library.urls")),
]

# Uploaded media in development only (a no-op when DEBUG is off).
urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
