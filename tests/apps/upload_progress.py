"""Reads the request body in 64 KiB blocks, touching a marker file once the first block is
in, then answers its length and SHA-256; a read that fails is written to ``MARKER.err``.

The marker's path is the query string: a test waits for it to know the app is reading
while the client has not yet sent the whole body.
"""

import hashlib
from pathlib import Path
from urllib.parse import unquote


def app(environ, start_response):
    marker = Path(unquote(environ["QUERY_STRING"]))
    digest = hashlib.sha256()
    length = 0
    read = environ["wsgi.input"].read
    try:
        while True:
            block = read(1 << 16)
            if not block:
                break
            if not length:
                marker.touch()
            digest.update(block)
            length += len(block)
    except OSError as error:
        marker.with_suffix(".err").write_text(f"{type(error).__name__}: {error}")
        raise
    body = f"{length} {digest.hexdigest()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
