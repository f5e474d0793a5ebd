"""URLconf of the static benchmark project: empty, WhiteNoise answers /static/ before routing.

Benchmark fixture; anything else is Django's 404.
"""

urlpatterns: list[object] = []
