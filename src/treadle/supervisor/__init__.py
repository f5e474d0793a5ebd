"""The process tree: a supervisor that holds the listening sockets and runs worker processes.

Composition layer. ``loop`` is the parent's select loop and ``arbiter`` its production rules
(``--workers N``); ``process`` is a worker as the parent sees it; ``child`` is what a worker
does to adopt the sockets and report; ``sockets`` binds and holds listeners; ``signals`` is
the one table of what each signal does; ``logfiles`` reopens logs on SIGUSR1;
``steering`` points new TCP connections at the worker slots that accept. The dev
reloader (reload.py, reload_worker.py) is the same loop with one worker and a file watcher.
Nothing here imports http/ or wsgi/, and the parent never imports the app.
"""
