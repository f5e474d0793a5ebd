"""Reads the whole request body in blocks and answers its length and SHA-256 (big uploads)."""

import hashlib


def app(environ, start_response):
    digest = hashlib.sha256()
    length = 0
    read = environ["wsgi.input"].read
    while True:
        block = read(1 << 20)
        if not block:
            break
        digest.update(block)
        length += len(block)
    body = f"{length} {digest.hexdigest()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
