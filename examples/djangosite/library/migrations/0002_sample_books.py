"""Data migration: a few sample books so /books/ and /books.json are not empty.

Runs once with `migrate`; reversing it deletes exactly these titles.
"""

from django.db import migrations

SAMPLE_BOOKS = [
    ("Twisted Network Programming Essentials", "Jessica McKellar and Abe Fettig", 2013),
    ("High Performance Browser Networking", "Ilya Grigorik", 2013),
    ("Two Scoops of Django", "Daniel and Audrey Feldroy", 2020),
]


def add_sample_books(apps, schema_editor):
    Book = apps.get_model("library", "Book")
    for title, author, year in SAMPLE_BOOKS:
        Book.objects.get_or_create(title=title, author=author, defaults={"year": year})


def remove_sample_books(apps, schema_editor):
    Book = apps.get_model("library", "Book")
    Book.objects.filter(title__in=[title for title, _, _ in SAMPLE_BOOKS]).delete()


class Migration(migrations.Migration):
    dependencies = [("library", "0001_initial")]

    operations = [migrations.RunPython(add_sample_books, remove_sample_books)]
