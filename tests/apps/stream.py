"""Streaming responses: a generator without Content-Length, sized by the query string."""


def app(environ, start_response):
    query = dict(p.split("=", 1) for p in environ["QUERY_STRING"].split("&") if "=" in p)
    chunks = int(query.get("chunks", "5"))
    size = int(query.get("size", "10"))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])

    def body():
        block = b"x" * (size - 1) + b"\n"
        for _ in range(chunks):
            yield block

    return body()
