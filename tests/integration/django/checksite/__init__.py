"""checksite: the example Django site plus hooks for treadle's Django integration tests.

Copied next to a copy of examples/djangosite by tests/integration/test_django.py; never
imported by the test process itself.
"""
