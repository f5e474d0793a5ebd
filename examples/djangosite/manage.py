#!/usr/bin/env python
"""Django's command-line entry point for the bundled example site.

Run `python manage.py server` to serve it with treadle (the `treadle.django` app);
`scripts/serve-example.sh` at the repository root does the whole setup first.
"""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djangosite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
