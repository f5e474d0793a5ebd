"""What a proxy in front sees: the serving pid and peer port, a hashed upload, a paced stream.

``/`` answers JSON with the pid and the peer's port (the proxy's upstream connection);
``/upload`` reads the body in blocks and answers its length and SHA-256 with the framing
it came in; ``/stream?fifo=PATH&chunks=N`` yields one line, then waits for one byte from
the FIFO (written by the test once the line reached it) before the next.
"""

import hashlib
import json
import os
from urllib.parse import parse_qs


def reply(start_response, info):
    body = json.dumps(info).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def upload(environ, start_response):
    digest = hashlib.sha256()
    length = 0
    stream = environ["wsgi.input"]
    while True:
        block = stream.read(1 << 20)
        if not block:
            break
        digest.update(block)
        length += len(block)
    return reply(
        start_response,
        {
            "length": length,
            "sha256": digest.hexdigest(),
            "content_length": environ.get("CONTENT_LENGTH", ""),
            "transfer_encoding": environ.get("HTTP_TRANSFER_ENCODING", ""),
        },
    )


def stream(environ, start_response):
    query = parse_qs(environ["QUERY_STRING"])
    fifo = query["fifo"][0]
    chunks = int(query.get("chunks", ["3"])[0])
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        # The test holds the FIFO open for writing, so this open does not block.
        with open(fifo, "rb", buffering=0) as acks:
            for number in range(chunks):
                yield b"chunk %d\n" % number
                if number + 1 < chunks and not acks.read(1):
                    return  # the test went away

    return body()


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/upload":
        return upload(environ, start_response)
    if path == "/stream":
        return stream(environ, start_response)
    return reply(
        start_response,
        {
            "pid": os.getpid(),
            "peer_port": environ.get("REMOTE_PORT", ""),
            "host": environ.get("HTTP_HOST", ""),
            "path": path,
            "query": environ["QUERY_STRING"],
            "forwarded_for": environ.get("HTTP_X_FORWARDED_FOR", ""),
        },
    )
