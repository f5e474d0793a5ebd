"""URLconf of the `library` app: every page of the example site except the admin.

Routing only.
"""

from django.urls import path

from . import reactor_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("books/", views.book_list, name="book-list"),
    path("books/new/", views.book_create, name="book-create"),
    path("books.json", views.books_json, name="books-json"),
    path("upload/", views.upload, name="upload"),
    path("stream/", views.stream, name="stream"),
    path("twisted/sleep/", reactor_views.twisted_sleep, name="twisted-sleep"),
    path("twisted/fetch/", reactor_views.twisted_fetch, name="twisted-fetch"),
]
