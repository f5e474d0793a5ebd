"""Reports the cyclic garbage collector's settings as the app sees them."""

import gc


def app(environ, start_response):
    threshold = gc.get_threshold()
    body = f"{threshold[0]} {threshold[1]} {threshold[2]} frozen={gc.get_freeze_count()}\n"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
