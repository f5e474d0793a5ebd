"""Says which worker process answered; can sleep (a request in flight) or stall the reactor."""

import json
import os
import subprocess
import sys
import time


def stall_reactor(seconds):
    """Runs in the reactor thread: a reactor stuck in a blocking call."""
    time.sleep(seconds)


def app(environ, start_response):
    path = environ["PATH_INFO"]
    seconds = float(environ.get("QUERY_STRING") or 0)
    if path == "/sleep":
        # The test waits for this line: the request is now in flight in this worker.
        print(f"procinfo: sleeping {seconds} s in {os.getpid()}", file=sys.stderr, flush=True)
        time.sleep(seconds)
    elif path == "/stall-reactor":
        from twisted.internet import reactor, threads

        # In flight for a beat or two first, so the supervisor hears what was running.
        time.sleep(1.5)
        threads.blockingCallFromThread(reactor, stall_reactor, seconds)
    info = {"pid": os.getpid(), "multiprocess": environ["wsgi.multiprocess"]}
    if path == "/orphan":
        # sh starts a sleep in the background and exits: the sleep is orphaned at once.
        shell = subprocess.run(
            ["sh", "-c", "sleep 1 >/dev/null 2>&1 & echo $!"], capture_output=True, check=True
        )
        info["orphan"] = int(shell.stdout)
    body = json.dumps(info).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
