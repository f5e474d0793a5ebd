"""The Mongrel2 sockets' ZeroMQ context: its I/O thread does not preempt the reactor.

Real libzmq, in a fresh interpreter (so that no other context's threads are about): the
context's I/O thread starts with its first socket, and the kernel reports the scheduling
policy it runs under. An app's own ``zmq.Context.instance()`` keeps the default policy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytest.importorskip("zmq", reason="pyzmq is not installed (pip install 'treadle[mongrel2]')")
pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="SCHED_BATCH and /proc are Linux's"
)

PROBE = """
import json, os, time
from pathlib import Path
import zmq
from treadle.mongrel2.zmq_context import io_context

def io_threads():
    return [int(task.name) for task in Path("/proc/self/task").iterdir()
            if (task / "comm").read_text().startswith("ZMQbg/IO")]

def new_thread(make_socket, known, policy=None):
    # libzmq starts its threads with the context's first socket, and sets a policy from
    # inside the new thread: wait for the thread, and for the policy if one is expected.
    sock = make_socket()
    deadline = time.monotonic() + 10
    while True:
        new = [tid for tid in io_threads() if tid not in known]
        if new and policy in (None, os.sched_getscheduler(new[0])):
            return sock, new[0], os.sched_getscheduler(new[0])
        if time.monotonic() > deadline:
            return sock, None, os.sched_getscheduler(new[0]) if new else None
        time.sleep(0.01)

ours, ours_tid, ours_policy = new_thread(lambda: io_context().socket(zmq.PUB), [], os.SCHED_BATCH)
app, _, app_policy = new_thread(lambda: zmq.Context.instance().socket(zmq.PUB), [ours_tid])
print(json.dumps({"ours": ours_policy, "app": app_policy,
                  "same": io_context() is zmq.Context.instance()}))
ours.close(0); app.close(0)
"""


def test_the_io_thread_runs_under_sched_batch_and_the_apps_context_is_left_alone() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["ours"] == os.SCHED_BATCH
    assert seen["app"] == os.SCHED_OTHER
    assert seen["same"] is False
