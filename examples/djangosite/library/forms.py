"""Forms of the example site: create a book, upload a file.

Validation only; the views decide what to do with the data.
"""

from django import forms

from .models import Book


class BookForm(forms.ModelForm):
    class Meta:
        model = Book
        fields = ["title", "author", "year"]


class UploadForm(forms.Form):
    file = forms.FileField(help_text="Any file; 20 MiB is fine (large files spool to disk).")
