"""The suite's pytest settings make a leaked resource fail the test that leaked it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LEAKY = """
import socket


def test_closes_its_socket():
    with socket.socket():
        pass


def test_leaks_a_socket():
    socket.socket()  # dropped unclosed: CPython warns from the socket's __del__
"""


def test_a_resource_warning_fails_the_test(tmp_path: Path) -> None:
    (tmp_path / "test_leaky.py").write_text(LEAKY)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(ROOT / "pyproject.toml"),
            "--rootdir",
            str(tmp_path),
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            "-q",
            "-rA",
            str(tmp_path / "test_leaky.py"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "PASSED test_leaky.py::test_closes_its_socket" in result.stdout
    assert "test_leaky.py::test_leaks_a_socket" in result.stdout
    assert "ResourceWarning" in result.stdout
