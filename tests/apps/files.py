"""A large file through wsgi.file_wrapper (?mib=N, default 8): the reactor streams it."""

import os
import tempfile

_path = os.path.join(tempfile.gettempdir(), f"treadle-test-files-{os.getpid()}.bin")


def app(environ, start_response):
    query = dict(p.split("=", 1) for p in environ["QUERY_STRING"].split("&") if "=" in p)
    size = int(query.get("mib", "8")) * 1024 * 1024
    if not os.path.exists(_path) or os.path.getsize(_path) != size:
        with open(_path, "wb") as out:
            out.write(b"f" * size)
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](open(_path, "rb"))  # noqa: SIM115 - the server closes it
