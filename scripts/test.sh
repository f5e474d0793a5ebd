#!/usr/bin/env bash
# Install treadle with its test dependencies into a venv and run the whole test suite.
# This is the README's test command and what .ci/run runs (once per Python/dependency set).
#   PYTHON=python3.12   the interpreter a new venv is made with (default python3)
#   VENV=.venv-lowest   the venv to use or create (default .venv)
#   CONSTRAINTS=tests/constraints-lowest.txt   pip constraints (CI: every declared floor)
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/test-programs.sh
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
if [ -n "${CONSTRAINTS:-}" ]; then
    "$VENV/bin/python" -m pip install -q -e '.[dev]' -c "$CONSTRAINTS"
else
    "$VENV/bin/python" -m pip install -q -e '.[dev]'
fi
"$VENV/bin/python" -c 'import sys, twisted, httptools, django
print("== tests on Python %s, Twisted %s, httptools %s, Django %s"
      % (sys.version.split()[0], twisted.__version__, httptools.__version__, django.__version__))'
exec "$VENV/bin/python" -m pytest -q "$@"
