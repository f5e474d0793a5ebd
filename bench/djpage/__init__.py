"""A small Django project with one page: "the Django page" of the Mongrel2 benchmark.

Benchmark fixture: a view rendering a template (a title, a table of 20 rows) through
Django's usual middleware (security, common, clickjacking), no database and no sessions,
so that the figures measure the server and Django's request path, not a query.
"""
