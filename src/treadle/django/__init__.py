"""treadle's Django app: ``python manage.py server`` serves the project with treadle.

Composition layer: add "treadle.django" to INSTALLED_APPS. Importing this package
imports nothing from Django or Twisted; the command and the middleware do that.
"""
