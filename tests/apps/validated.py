"""Apps wrapped in wsgiref.validate, which asserts every PEP 3333 rule the server must keep."""

from wsgiref.validate import validator


def _echo(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    line = environ["wsgi.input"].readline()
    environ["wsgi.errors"].write("validated app ran\n")
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body) + len(line)))]
    )
    return [body + line]


def _stream(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written;")
    return iter([b"one;", b"two;"])


echo = validator(_echo)
stream = validator(_stream)
