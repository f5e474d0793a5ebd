"""``treadle mongrel2-broker``: gives each Mongrel2 request to a handler with a free thread.

Composition layer: a process of its own with a plain ZeroMQ poll loop (no reactor, no app).
Mongrel2 PUSHes requests round-robin to whatever is connected, so a handler whose threads are
all busy with a slow request still gets its share, and those requests wait behind it while
other handlers idle. This is ZeroMQ's load-balancing pattern (the guide's "least recently
used" broker with the Paranoid Pirate's heartbeats): the broker pulls from Mongrel2 and
hands requests over a ROUTER socket to handlers (``treadle mongrel2 --broker``), which
announce their free threads as credits. Responses do not pass through it: handlers publish
straight to Mongrel2.

Handler -> broker: ``READY n`` (n more free threads), ``DONE sender conn n`` (n requests of
that client ended: n credits back), ``HEARTBEAT free`` every second (a broker that does not
know the handler, say after a restart, takes ``free`` as its credit), ``BYE`` (stopping:
send nothing more). Broker -> handler: ``REQUEST message``, ``HEARTBEAT`` every second, and
``BYE`` once a stopping handler has ended every request it was given: nothing follows it
(one connection keeps its order), so the handler may close then without losing a request
that was on its way. A handler silent for three heartbeats is dropped.

Requests of one client (pipelined, or an upload's done notice) go to the handler that has
its earlier ones, so they are answered in order; a disconnect notice goes there too, or
drops the client's requests still queued here. A stopping handler's clients keep their
requests here until it has answered the earlier ones, then go to another handler.
"""

from __future__ import annotations

import errno
import logging
import signal
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import zmq

from treadle.mongrel2.message import Control, Disconnect, MessageError, Request, parse_message
from treadle.mongrel2.zmq_context import io_context

log = logging.getLogger("treadle")

HEARTBEAT_S = 1.0
LIVENESS = 3  # heartbeats missed before a handler is dropped
MAX_QUEUED = 10_000  # requests waiting here for a free thread; past it, Mongrel2 waits


@dataclass
class Worker:
    identity: bytes
    credit: int = 0
    seen: float = 0.0
    leaving: bool = False
    clients: set[tuple[bytes, bytes]] = field(default_factory=set)


class Broker:
    """The routing state; ``poll_once`` moves messages. One thread, no locks."""

    def __init__(self, pull: Any, router: Any, clock: Any = time.monotonic) -> None:
        self.pull = pull
        self.router = router
        self.clock = clock
        self.workers: OrderedDict[bytes, Worker] = OrderedDict()  # least recently used first
        # client -> (its handler, its requests there not yet DONE)
        self.owners: dict[tuple[bytes, bytes], list[Any]] = {}
        self.queue: deque[tuple[tuple[bytes, bytes], bytes]] = deque()
        self.next_heartbeat = clock() + HEARTBEAT_S
        self.poller = zmq.Poller()
        self.poller.register(router, zmq.POLLIN)
        self.poller.register(pull, zmq.POLLIN)

    # -- from Mongrel2 ----------------------------------------------------------------

    def from_mongrel2(self, data: bytes) -> None:
        try:
            message = parse_message(data)
        except MessageError as error:
            log.warning("broker: dropped a malformed message (%s): %r", error, data[:80])
            return
        key = (message.sender, message.conn_id)
        owner = self.owners.get(key)
        if type(message) is Disconnect:
            if owner is not None:
                self.send(owner[0], b"REQUEST", data)
            else:
                self.queue = deque(item for item in self.queue if item[0] != key)
            return
        if type(message) is Control:
            return
        assert type(message) is Request
        if owner is not None:
            worker = owner[0]
            if worker.leaving and (message.upload_done is None or message.upload_start is None):
                # Its handler is stopping: held here until it has answered this client's
                # earlier requests (in order), then given to another handler.
                self.queue.append((key, data))
                self.dispatch()
                return
            if message.upload_done is None or message.upload_start is None:
                owner[1] += 1  # a new request of the same client, after its earlier ones
                worker.credit -= 1
            self.send(worker, b"REQUEST", data)
            return
        self.queue.append((key, data))
        self.dispatch()

    def dispatch(self) -> None:
        """Hand queued requests to the least recently used handlers with credit."""
        queue = self.queue
        held: list[tuple[tuple[bytes, bytes], bytes]] = []
        while queue:
            worker = next((w for w in self.workers.values() if w.credit > 0), None)
            if worker is None:
                break
            key, data = queue.popleft()
            owner = self.owners.get(key)
            if owner is not None:
                if owner[0].leaving:
                    held.append((key, data))  # until its stopping handler is done with it
                    continue
                worker = owner[0]  # an earlier request of this client got there meanwhile
                owner[1] += 1
            else:
                self.owners[key] = [worker, 1]
                worker.clients.add(key)
            worker.credit -= 1
            self.workers.move_to_end(worker.identity)
            self.send(worker, b"REQUEST", data)
        queue.extendleft(reversed(held))

    def release_if_done(self, worker: Worker) -> None:
        """A stopping handler with no request of ours left: BYE back, and forget it."""
        if worker.leaving and not worker.clients and self.workers.get(worker.identity) is worker:
            self.send(worker, b"BYE")
            del self.workers[worker.identity]
            log.info("broker: handler %s left", worker.identity.hex())

    # -- from handlers ----------------------------------------------------------------

    def from_handler(self, frames: list[bytes]) -> None:
        identity, command, *args = frames
        worker = self.workers.get(identity)
        now = self.clock()
        if command == b"BYE":
            if worker is None:
                worker = Worker(identity)  # not known here (we restarted): nothing pending
                self.workers[identity] = worker
            worker.leaving = True
            worker.credit = 0
            self.release_if_done(worker)
            return
        if worker is None:
            if command not in (b"READY", b"HEARTBEAT"):
                return  # a DONE from a handler already released: nothing of ours is left
            worker = self.workers[identity] = Worker(identity)
            if command == b"HEARTBEAT" and args:
                worker.credit = int(args[0])  # a handler we did not know: we restarted
            log.info("broker: handler %s joined", identity.hex())
        worker.seen = now
        if command == b"READY" and args:
            worker.credit += int(args[0])
        elif command == b"DONE" and len(args) == 3:
            key, count = (args[0], args[1]), int(args[2])
            if not worker.leaving:
                worker.credit += count
            owner = self.owners.get(key)
            if owner is not None and owner[0] is worker:
                owner[1] -= count
                if owner[1] <= 0:
                    del self.owners[key]
                    worker.clients.discard(key)
            self.release_if_done(worker)
        self.dispatch()

    def send(self, worker: Worker, *frames: bytes) -> None:
        self.router.send_multipart([worker.identity, *frames])

    def heartbeat(self) -> None:
        now = self.clock()
        for worker in list(self.workers.values()):
            if now - worker.seen > HEARTBEAT_S * LIVENESS:
                log.warning(
                    "broker: handler %s silent for %.0f s: dropped (%d requests lost with it)",
                    worker.identity.hex(),
                    now - worker.seen,
                    sum(self.owners[key][1] for key in worker.clients if key in self.owners),
                )
                for key in worker.clients:
                    self.owners.pop(key, None)
                del self.workers[worker.identity]
            elif not worker.leaving:
                self.send(worker, b"HEARTBEAT")
        self.next_heartbeat = now + HEARTBEAT_S

    def poll_once(self) -> None:
        timeout_ms = max(0.0, (self.next_heartbeat - self.clock()) * 1000)
        # Past MAX_QUEUED, Mongrel2's socket is left alone: it holds the rest.
        self.poller.modify(self.pull, zmq.POLLIN if len(self.queue) < MAX_QUEUED else 0)
        events = dict(self.poller.poll(timeout_ms))
        if self.router in events:
            while True:
                try:
                    frames = self.router.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.from_handler(frames)
        if self.pull in events:
            for _ in range(256):
                try:
                    data = self.pull.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.from_mongrel2(data)
        if self.clock() >= self.next_heartbeat:
            self.heartbeat()


def run(send_spec: str, backend_spec: str) -> int:
    """Main thread: broker until SIGTERM or SIGINT; the exit status."""
    context = io_context()
    pull = context.socket(zmq.PULL)
    router = context.socket(zmq.ROUTER)
    for sock in (pull, router):
        sock.setsockopt(zmq.LINGER, 1000)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a vanished handler raises, not drops
    try:
        router.bind(backend_spec)
        pull.connect(send_spec)
    except zmq.ZMQError as error:
        log.error("broker: cannot use %s / %s: %s", send_spec, backend_spec, error)
        return 1
    broker = Broker(pull, router)
    stopping: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, _frame: stopping.append(number))
    log.info("Brokering Mongrel2 requests from %s to handlers at %s", send_spec, backend_spec)
    while not stopping:
        try:
            broker.poll_once()
        except zmq.ZMQError as error:
            if error.errno == zmq.EHOSTUNREACH:
                log.warning("broker: a handler vanished while a request was sent to it")
                continue
            if error.errno == errno.EINTR:
                continue
            raise
    log.info("broker stopping (%d requests queued here are dropped)", len(broker.queue))
    pull.close(0)
    router.close(1000)
    return 0
