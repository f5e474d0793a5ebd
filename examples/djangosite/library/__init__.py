"""The example site's one app: books in SQLite, forms, uploads, streaming and treadle.wait demos.

Each page shows one thing a WSGI server must get right; none of them needs treadle to
import, so `manage.py check` and the test suite run under any server.
"""
