"""The process tree: a supervisor that holds the listening sockets and runs worker processes.

Composition layer. ``arbiter`` is the parent (``--workers N``), ``child`` is what a worker
process does to adopt the sockets and report to it, ``sockets`` binds and holds listeners,
``signals`` is the one table of what each signal does. The development reloader
(reload.py) uses the same sockets and child protocol with one worker and a file watcher.
Nothing here imports http/ or wsgi/, and the parent never imports the app.
"""
