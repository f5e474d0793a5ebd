"""Pages of the example site that need nothing but Django: books, upload, streaming.

Plain synchronous Django views, run by treadle in its app threads. The treadle.wait
demos live in reactor_views.py so that this module never imports treadle.
"""

import hashlib
import time
from collections.abc import Iterator

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from .forms import BookForm, UploadForm
from .models import Book

STREAM_LINES = 10
# Pause between streamed lines so a browser or `curl -N` shows them arriving one by one.
STREAM_DEFAULT_DELAY_S = 0.2
STREAM_MAX_DELAY_S = 2.0
HASH_CHUNK_BYTES = 64 * 1024


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    context = {
        "book_count": Book.objects.count(),
        "server_software": request.META.get("SERVER_SOFTWARE", "unknown"),
    }
    return render(request, "library/home.html", context)


@require_GET
def book_list(request: HttpRequest) -> HttpResponse:
    return render(request, "library/book_list.html", {"books": Book.objects.all()})


@require_GET
def books_json(request: HttpRequest) -> JsonResponse:
    books = [book.as_dict() for book in Book.objects.all()]
    return JsonResponse({"count": len(books), "books": books})


@require_http_methods(["GET", "POST"])
def book_create(request: HttpRequest) -> HttpResponse:
    form = BookForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        form.save()
        # Post/Redirect/Get: a reload of the list page does not post the form again.
        return redirect("book-list")
    return render(request, "library/book_form.html", {"form": form})


@require_http_methods(["GET", "POST"])
def upload(request: HttpRequest) -> HttpResponse:
    form = UploadForm(request.POST or None, request.FILES or None)
    result = None
    if request.method == "POST" and form.is_valid():
        uploaded = form.cleaned_data["file"]
        digest = hashlib.sha256()
        size = 0
        # chunks() reads from memory or from the temp file Django spooled a large upload to.
        for chunk in uploaded.chunks(HASH_CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
        result = {"name": uploaded.name, "size": size, "sha256": digest.hexdigest()}
    return render(request, "library/upload.html", {"form": form, "result": result})


def stream_delay_s(request: HttpRequest) -> float:
    """The pause between lines: ?delay=SECONDS, clamped to [0, STREAM_MAX_DELAY_S]."""
    try:
        delay = float(request.GET.get("delay", STREAM_DEFAULT_DELAY_S))
    except ValueError:
        return STREAM_DEFAULT_DELAY_S
    if delay != delay:  # NaN
        return STREAM_DEFAULT_DELAY_S
    return min(max(delay, 0.0), STREAM_MAX_DELAY_S)


@require_GET
def stream(request: HttpRequest) -> StreamingHttpResponse:
    delay_s = stream_delay_s(request)

    def lines() -> Iterator[bytes]:
        # Each yielded item is one WSGI chunk: the server sends it before asking for the next.
        for number in range(1, STREAM_LINES + 1):
            if number > 1 and delay_s:
                time.sleep(delay_s)
            yield f"line {number} of {STREAM_LINES} at {time.time():.3f}\n".encode()

    response = StreamingHttpResponse(lines(), content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "no-store"
    # Asks nginx (when it proxies) not to buffer the stream.
    response["X-Accel-Buffering"] = "no"
    return response
