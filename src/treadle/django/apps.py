"""The AppConfig of treadle's Django app (name "treadle.django", label "treadle").

Composition layer: it only declares the app so Django finds the ``server`` command;
it must not start anything or read settings at import time.
"""

from __future__ import annotations

from django.apps import AppConfig


class TreadleConfig(AppConfig):
    name = "treadle.django"
    label = "treadle"
    verbose_name = "treadle"
