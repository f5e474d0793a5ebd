"""Sets a cookie the way Django does (SimpleCookie's output starts with a space) and echoes
the environ keys a server fills in itself."""

import json
from http.cookies import SimpleCookie


def app(environ, start_response):
    cookie = SimpleCookie()
    cookie["csrftoken"] = "abc"
    cookie["csrftoken"]["path"] = "/"
    value = cookie.output(header="")  # " csrftoken=abc; Path=/", as Django sends it
    keys = ["SERVER_SOFTWARE", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "REQUEST_METHOD"]
    body = json.dumps({key: environ.get(key) for key in keys}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Set-Cookie", value)])
    return [body]
