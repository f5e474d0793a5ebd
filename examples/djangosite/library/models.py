"""The example site's one model: a Book stored in SQLite.

Data only; pages that list and create books live in views.py.
"""

from django.db import models


class Book(models.Model):
    title = models.CharField(max_length=200)
    author = models.CharField(max_length=200)
    year = models.PositiveSmallIntegerField(null=True, blank=True)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["title", "id"]

    def __str__(self) -> str:
        return f"{self.title} ({self.author})"

    def as_dict(self) -> dict[str, object]:
        """The book as /books.json shows it."""
        return {"id": self.pk, "title": self.title, "author": self.author, "year": self.year}
