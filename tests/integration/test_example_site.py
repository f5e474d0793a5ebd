"""The bundled example site's own Django tests (pages, CSRF form, upload, streaming) pass."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_example_site_django_tests_pass() -> None:
    site = ROOT / "examples" / "djangosite"
    result = subprocess.run(
        [sys.executable, "manage.py", "test", "library", "--noinput"],
        cwd=site,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stderr
