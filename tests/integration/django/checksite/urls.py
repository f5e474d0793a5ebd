"""URLconf of checksite: the example site's URLs plus the test-only views."""

from django.urls import include, path

from . import views

urlpatterns = [
    path("checks/wait-for-exit/", views.wait_for_exit, name="wait-for-exit"),
    path("", include("djangosite.urls")),
]
