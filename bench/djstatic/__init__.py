"""A tiny Django project whose only job is serving one static file through WhiteNoise.

Benchmark fixture for the static scenario (gunicorn gthread + Django + whitenoise); treadle serves
the same directory with `--static /static=DIR`. No models, no database, no views.
"""

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_NAME = "file100k.bin"
STATIC_BYTES = 100 * 1024
STATIC_URL_PATH = f"/static/{STATIC_NAME}"


def ensure_static_file() -> Path:
    """Write the 100 KiB file (deterministic bytes) if it is missing or the wrong size."""
    STATIC_DIR.mkdir(exist_ok=True)
    path = STATIC_DIR / STATIC_NAME
    if not path.exists() or path.stat().st_size != STATIC_BYTES:
        pattern = bytes(range(256))
        path.write_bytes((pattern * (STATIC_BYTES // len(pattern) + 1))[:STATIC_BYTES])
    return path
