"""App configuration for `library`, the example site's app.

Declares the app only; it must not run queries or start anything at import.
"""

from django.apps import AppConfig


class LibraryConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "library"
    verbose_name = "Library"
