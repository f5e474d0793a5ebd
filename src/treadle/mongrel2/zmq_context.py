"""The ZeroMQ context that Mongrel2 handler and broker sockets live on, one per process.

Reactor layer: makes the context and sets its options; it opens no socket and starts no
thread of its own (libzmq starts its I/O thread with the first socket). It is not the
global ``zmq.Context.instance()``, which an app may use with options of its own.

The context's I/O thread moves every message between our sockets and TCP. It runs under
Linux's SCHED_BATCH: a fair share of the CPU like any thread, but when it is woken it does
not preempt the thread that woke it. Without that, on a busy core every message we send
wakes the I/O thread, which at once takes the CPU from the reactor, writes that one
message and sleeps again: a context switch per message, and Mongrel2 reads one message
per wake-up. Measured with Mongrel2 and a handler sharing one core, SCHED_BATCH gave about
1.5x the requests per second and halved Mongrel2's CPU per request
(docs/benchmarks-h2-mongrel2.md). With idle cores it changes nothing. Where the policy
cannot be set (not Linux, or a libzmq older than 4.2.3) the context keeps the default.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import zmq

log = logging.getLogger("treadle")

_context: zmq.Context[Any] | None = None


def io_context() -> zmq.Context[Any]:
    """This process's context for Mongrel2 traffic, made on first use."""
    global _context
    if _context is None:
        context: zmq.Context[Any] = zmq.Context()
        batch = getattr(os, "SCHED_BATCH", None)
        if batch is not None:
            try:
                context.set(zmq.THREAD_SCHED_POLICY, batch)  # only before the first socket
            except zmq.ZMQError as error:  # EINVAL: a libzmq without the option
                log.debug("mongrel2: the ZeroMQ I/O thread keeps its scheduling: %s", error)
        _context = context
    return _context
