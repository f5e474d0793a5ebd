"""The example site's project package: settings, root URLconf and the WSGI entry point.

It holds configuration only; the pages live in the `library` app.
"""
