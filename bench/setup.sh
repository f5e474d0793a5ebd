#!/usr/bin/env bash
# Prepare the benchmark machine: wrk and h2load from Debian, and a venv at bench/.venv holding
# every server we compare against plus treadle itself (editable, from this checkout).
# Idempotent: re-running installs only what is missing. Needs root for apt-get.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"
VENV="$BENCH_DIR/.venv"
PYTHON="${PYTHON:-python3}"

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
if ((${#missing[@]})); then
    echo "setup: apt-get installing ${missing[*]}"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    timeout 600 $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 600 $SUDO apt-get install -y -qq "${missing[@]}"
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

# pip is itself idempotent: satisfied requirements are skipped.
timeout 900 "$VENV/bin/pip" install -q --upgrade pip
timeout 900 "$VENV/bin/pip" install -q \
    gunicorn waitress granian twisted django whitenoise
timeout 900 "$VENV/bin/pip" install -q -e "$REPO_ROOT"

echo "setup: done"
"$VENV/bin/python" - <<'PY'
from importlib.metadata import version
for name in ("treadle", "twisted", "gunicorn", "waitress", "granian", "django", "whitenoise"):
    print(f"  {name} {version(name)}")
PY
