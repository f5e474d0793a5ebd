"""Echoes the request: method, path, query, selected environ keys, and the body."""

import json


def app(environ, start_response):
    body = environ["wsgi.input"].read()
    keys = [
        "REQUEST_METHOD",
        "SCRIPT_NAME",
        "PATH_INFO",
        "QUERY_STRING",
        "RAW_URI",
        "SERVER_NAME",
        "SERVER_PORT",
        "SERVER_PROTOCOL",
        "REMOTE_ADDR",
        "CONTENT_TYPE",
        "CONTENT_LENGTH",
        "HTTP_HOST",
        "HTTP_X_TEST",
        "wsgi.url_scheme",
        "wsgi.multithread",
        "wsgi.multiprocess",
    ]
    info = {key: environ.get(key) for key in keys}
    info["body_length"] = len(body)
    info["body_head"] = body[:64].decode("latin-1")
    payload = json.dumps(info).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [payload]
