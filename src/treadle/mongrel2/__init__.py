"""treadle as a Mongrel2 handler: the same dispatcher, container and pool behind ZeroMQ.

``tnetstring`` and ``message`` are pure (bytes <-> values); ``transport`` moves messages
on the reactor; ``upload`` is the wsgi.input of an async upload; ``serve``, ``command``,
``config_db`` and ``broker`` are the composition. docs/mongrel2.md says how to use it.
"""
