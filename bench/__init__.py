"""Benchmark harness for treadle and its peers (gunicorn, waitress, granian, twist web).

Tooling, not library code: nothing in src/treadle imports this package, and it is not part of the
test suite. Run it with bench/setup.sh then bench/.venv/bin/python -m bench.run (see README.md).
"""
