"""Django tests of the example site's pages, run with `python manage.py test library`.

They drive each page through Django's test client (no server): what a browser sees on the
list, the CSRF-protected form, the 20 MiB upload, the stream and the treadle.wait pages.
"""

import hashlib
import os
import re
import tempfile
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client, TestCase, override_settings
from django.test.client import RequestFactory

from .models import Book
from .views import STREAM_MAX_DELAY_S, stream_delay_s

CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
PLAIN_STATIC = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Tests run with DEBUG off and no collectstatic: plain names instead of the manifest.
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}


def csrf_token_from(html: str) -> str:
    match = CSRF_INPUT.search(html)
    assert match is not None, "the page has no CSRF token input"
    return match.group(1)


@override_settings(STORAGES=PLAIN_STATIC)
class SiteTestCase(TestCase):
    """Pages are fetched by a client that enforces CSRF, as a browser meets it."""

    def setUp(self) -> None:
        self.client = Client(enforce_csrf_checks=True)


class HomePageTests(SiteTestCase):
    def test_home_links_every_page_and_static_file(self) -> None:
        response = self.client.get("/")
        self.assertEqual(response.status_code, 200)
        html = response.content.decode()
        for href in ["/books/", "/books/new/", "/upload/", "/stream/", "/twisted/sleep/",
                     "/twisted/fetch/", "/admin/", "/books.json"]:  # fmt: skip
            self.assertIn(f'href="{href}"', html)
        self.assertIn('href="/static/library/site.css"', html)
        self.assertIn('src="/static/library/site.js"', html)
        self.assertIn('src="/static/library/logo.svg"', html)


class BookListTests(SiteTestCase):
    def test_list_shows_books_from_the_database(self) -> None:
        Book.objects.create(title="The Reactor Pattern", author="D. Schmidt", year=1995)
        response = self.client.get("/books/")
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "<td>The Reactor Pattern</td>", html=False)
        self.assertContains(response, "<td>1995</td>")

    def test_sample_books_come_from_the_data_migration(self) -> None:
        response = self.client.get("/books/")
        self.assertContains(response, "Twisted Network Programming Essentials")

    def test_json_lists_every_book(self) -> None:
        book = Book.objects.create(title="Zed", author="Z. Author")
        response = self.client.get("/books.json")
        self.assertEqual(response["Content-Type"], "application/json")
        payload = response.json()
        self.assertEqual(payload["count"], Book.objects.count())
        self.assertIn(
            {"id": book.pk, "title": "Zed", "author": "Z. Author", "year": None}, payload["books"]
        )


class BookCreateTests(SiteTestCase):
    def test_post_with_csrf_token_creates_book_and_redirects_to_list(self) -> None:
        token = csrf_token_from(self.client.get("/books/new/").content.decode())
        response = self.client.post(
            "/books/new/",
            {
                "csrfmiddlewaretoken": token,
                "title": "Made by a form",
                "author": "Me",
                "year": "2024",
            },
        )
        self.assertRedirects(response, "/books/")
        self.assertTrue(Book.objects.filter(title="Made by a form", year=2024).exists())
        self.assertContains(self.client.get("/books/"), "Made by a form")

    def test_post_without_csrf_token_is_forbidden(self) -> None:
        self.client.get("/books/new/")  # sets the CSRF cookie, as a browser would have it
        response = self.client.post("/books/new/", {"title": "Forged", "author": "Attacker"})
        self.assertEqual(response.status_code, 403)
        self.assertFalse(Book.objects.filter(title="Forged").exists())

    def test_invalid_form_is_shown_again_with_errors(self) -> None:
        token = csrf_token_from(self.client.get("/books/new/").content.decode())
        count = Book.objects.count()
        response = self.client.post("/books/new/", {"csrfmiddlewaretoken": token, "title": ""})
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "This field is required.")
        self.assertEqual(Book.objects.count(), count)


class UploadTests(SiteTestCase):
    def upload(self, name: str, data: bytes) -> str:
        token = csrf_token_from(self.client.get("/upload/").content.decode())
        with tempfile.NamedTemporaryFile(suffix=f"-{name}") as handle:
            handle.write(data)
            handle.flush()
            handle.seek(0)
            response = self.client.post("/upload/", {"csrfmiddlewaretoken": token, "file": handle})
        self.assertEqual(response.status_code, 200)
        return response.content.decode()

    def test_20_mib_upload_reports_size_and_sha256(self) -> None:
        data = os.urandom(20 * 1024 * 1024)
        html = self.upload("big.bin", data)
        self.assertIn(f'<dd id="upload-size">{len(data)} bytes</dd>', html)
        self.assertIn(f"<code>{hashlib.sha256(data).hexdigest()}</code>", html)

    def test_small_upload_reports_size_and_sha256(self) -> None:
        html = self.upload("small.txt", b"hello treadle\n")
        self.assertIn('<dd id="upload-size">14 bytes</dd>', html)
        self.assertIn(hashlib.sha256(b"hello treadle\n").hexdigest(), html)

    def test_upload_without_file_shows_the_error(self) -> None:
        token = csrf_token_from(self.client.get("/upload/").content.decode())
        response = self.client.post("/upload/", {"csrfmiddlewaretoken": token})
        self.assertContains(response, "This field is required.")
        self.assertNotContains(response, "upload-sha256")


class StreamTests(SiteTestCase):
    def test_stream_sends_ten_lines_as_ten_chunks(self) -> None:
        response = self.client.get("/stream/?delay=0")
        self.assertEqual(response.status_code, 200)
        self.assertTrue(response.streaming)
        self.assertEqual(response["Content-Type"], "text/plain; charset=utf-8")
        chunks = list(response.streaming_content)
        self.assertEqual(len(chunks), 10)
        for number, chunk in enumerate(chunks, start=1):
            self.assertTrue(chunk.startswith(f"line {number} of 10 at ".encode()), chunk)
            self.assertTrue(chunk.endswith(b"\n"))

    def test_delay_parameter_is_clamped(self) -> None:
        factory = RequestFactory()
        self.assertEqual(stream_delay_s(factory.get("/stream/?delay=0.05")), 0.05)
        self.assertEqual(stream_delay_s(factory.get("/stream/?delay=-3")), 0.0)
        self.assertEqual(stream_delay_s(factory.get("/stream/?delay=99")), STREAM_MAX_DELAY_S)
        self.assertEqual(stream_delay_s(factory.get("/stream/?delay=nan")), 0.2)
        self.assertEqual(stream_delay_s(factory.get("/stream/?delay=soon")), 0.2)


class ReactorPagesOutsideTreadleTests(SiteTestCase):
    """Under the test client there is no treadle app thread: the pages say how to get one."""

    def test_sleep_page_asks_for_treadle(self) -> None:
        response = self.client.get("/twisted/sleep/")
        self.assertEqual(response.status_code, 503)
        self.assertContains(response, "manage.py server", status_code=503)

    def test_fetch_page_asks_for_treadle(self) -> None:
        response = self.client.get("/twisted/fetch/")
        self.assertEqual(response.status_code, 503)
        self.assertContains(response, "manage.py server", status_code=503)


class AdminTests(SiteTestCase):
    def test_superuser_sees_books_in_the_admin(self) -> None:
        get_user_model().objects.create_superuser("demo", "demo@example.com", "demo-password")
        self.assertEqual(self.client.get("/admin/").status_code, 302)
        self.client.force_login(get_user_model().objects.get(username="demo"))
        response = self.client.get("/admin/library/book/")
        self.assertContains(response, "Two Scoops of Django")


class ManifestStaticTests(TestCase):
    """With the site's real STORAGES, collectstatic writes hashed names the pages refer to."""

    def test_collectstatic_then_pages_use_hashed_names(self) -> None:
        with (
            tempfile.TemporaryDirectory() as static_root,
            override_settings(STATIC_ROOT=static_root),
        ):
            call_command("collectstatic", interactive=False, verbosity=0)
            html = Client().get("/").content.decode()
            css_match = re.search(r'href="/static/(library/site\.[0-9a-f]{12}\.css)"', html)
            self.assertIsNotNone(css_match, html)
            self.assertRegex(html, r'src="/static/library/site\.[0-9a-f]{12}\.js"')
            css = (Path(static_root) / css_match.group(1)).read_text()
            self.assertRegex(css, r'url\("logo\.[0-9a-f]{12}\.svg"\)')
