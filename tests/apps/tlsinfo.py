"""Says what the server told it about TLS: the SSL_* and HTTPS keys, the scheme, its pid."""

import json
import os


def app(environ, start_response):
    info = {key: value for key, value in environ.items() if key.startswith(("SSL_", "HTTPS"))}
    info["wsgi.url_scheme"] = environ["wsgi.url_scheme"]
    info["SERVER_PROTOCOL"] = environ["SERVER_PROTOCOL"]
    info["pid"] = os.getpid()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(info).encode()]
