"""Registers Book with the Django admin at /admin/.

Admin configuration only.
"""

from django.contrib import admin

from .models import Book


@admin.register(Book)
class BookAdmin(admin.ModelAdmin):
    list_display = ["title", "author", "year", "added_at"]
    search_fields = ["title", "author"]
    list_filter = ["year"]
