"""Who the app thinks the client is: REMOTE_ADDR, REMOTE_PORT, the scheme, and the proxy
headers it received, as JSON (for the proxy-header and PROXY protocol tests)."""

import json

KEYS = (
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "wsgi.url_scheme",
    "SERVER_PORT",
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_FORWARDED",
)


def app(environ, start_response):
    body = json.dumps({key: environ.get(key) for key in KEYS}).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
