"""URLconf and the one view of the benchmark page project: ``/`` renders page.html."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

ROWS = [{"number": n, "name": f"item {n}", "price": n * 1.25} for n in range(20)]


def page(request: HttpRequest) -> HttpResponse:
    return render(request, "page.html", {"title": "Benchmark page", "rows": ROWS})


urlpatterns = [path("", page)]
