"""Large responses: a stream of ?mib=N MiB (default 1024); a file through wsgi.file_wrapper."""

import logging
import os
import tempfile

CHUNK = b"z" * (1024 * 1024)
log = logging.getLogger("treadle")


def stream(environ, start_response):
    query = dict(p.split("=", 1) for p in environ["QUERY_STRING"].split("&") if "=" in p)
    mib = int(query.get("mib", "1024"))
    start_response(
        "200 OK",
        [("Content-Type", "application/octet-stream"), ("Content-Length", str(mib * len(CHUNK)))],
    )

    def body():
        try:
            for _ in range(mib):
                yield CHUNK
        finally:
            log.warning("stream body closed")

    return body()


_path = os.path.join(tempfile.gettempdir(), f"treadle-test-file-{os.getpid()}.bin")


def file(environ, start_response):
    if not os.path.exists(_path):
        with open(_path, "wb") as out:
            out.write(bytes(range(256)) * 4096)  # 1 MiB, recognisable
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](open(_path, "rb"), 8192)


def whole(environ, start_response):
    """One MiB in one piece: the response crosses to the reactor whole."""
    headers = [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(CHUNK)))]
    start_response("200 OK", headers)
    return [CHUNK]
