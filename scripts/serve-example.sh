#!/usr/bin/env bash
# Serve the bundled Django example (examples/djangosite) with treadle at http://127.0.0.1:8000/.
# Creates .venv-example, installs treadle with its Django extra and treq, migrates, collects static
# files, ensures a demo superuser, then runs `manage.py server`. Extra arguments go to that command:
#   scripts/serve-example.sh --bind 0.0.0.0:8080
set -euo pipefail

repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

python="${PYTHON:-python3}"
venv="$repo_root/.venv-example"
py="$venv/bin/python"
# Reinstall only when the dependencies may have changed; the editable install sees code changes.
stamp="$venv/.treadle-example-installed"

if [[ ! -x "$py" ]]; then
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: treadle needs Python 3.11 or newer; run with PYTHON=/path/to/python3.11" >&2
    exit 1
  fi
  echo "==> Creating $venv"
  if ! "$python" -m venv "$venv"; then
    rm -rf "$venv"
    echo "error: '$python -m venv' failed (on Debian/Ubuntu: apt install python3-venv)" >&2
    exit 1
  fi
fi

if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
  echo "==> Installing treadle[django] and treq into .venv-example"
  "$py" -m pip install --quiet --disable-pip-version-check -e '.[django]' treq
  touch "$stamp"
fi

cd examples/djangosite
echo "==> Migrating the SQLite database (examples/djangosite/db.sqlite3)"
"$py" manage.py migrate --noinput
echo "==> Collecting static files into examples/djangosite/staticfiles"
"$py" manage.py collectstatic --noinput
# Idempotent: creates the demo superuser, or resets its flags and password if it exists.
"$py" manage.py shell --verbosity 0 -c '
from django.contrib.auth import get_user_model
user, created = get_user_model().objects.get_or_create(
    username="demo", defaults={"email": "demo@example.com"}
)
user.is_staff = user.is_superuser = True
user.set_password("demo-password")
user.save()
print("==> Demo superuser", "created" if created else "ready")
'

# Show the address the server will use: the default, or a --bind passed through.
address="127.0.0.1:8000"
previous=""
for arg in "$@"; do
  case "$arg" in
    --bind=*) address="${arg#--bind=}" ;;
    *) if [[ "$previous" == "--bind" ]]; then address="$arg"; fi ;;
  esac
  previous="$arg"
done

cat <<MESSAGE

  treadle example site: http://$address/
  admin:                http://$address/admin/   (login: demo / demo-password)

MESSAGE

exec "$py" manage.py server 127.0.0.1:8000 --noreload "$@"
