"""One worker process as the supervisor sees it: its pid, state and report pipe.

Composition layer, used only by the arbiter. It turns the bytes a worker writes on its
pipe into messages and keeps the times the arbiter decides by. It never signals or
waits for the process: the arbiter does.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from typing import Any

log = logging.getLogger("treadle")

STARTING, READY, STOPPING = "starting", "ready", "stopping"


class WorkerProcess:
    """A spawned worker; replaced, never restarted."""

    def __init__(
        self, proc: subprocess.Popen[bytes], channel: int, generation: int, now: float
    ) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.channel = channel  # read end of the report pipe (non-blocking)
        self.generation = generation
        self.slot: int | None = None  # which of the supervisor's socket sets it accepts on
        self.failed_start = False  # killed for not getting ready in time
        self.hung = False  # killed for missing its heartbeats
        self.leave_at: float | None = None  # SIGTTOU: stops at this time
        self.spawned_at = now
        self.ready_at: float | None = None
        self.last_seen = now
        self.state = STARTING
        self.retiring = False  # served its --max-requests: replace it, then stop it
        self.kill_at: float | None = None  # while stopping: SIGKILL after this
        self.addresses: list[str] = []
        self.inflight: list[Any] = []  # [method, path, seconds] at its last beat
        self._partial = b""

    def read(self) -> list[dict[str, Any]] | None:
        """The complete messages waiting on the pipe; None at end of file (it exited)."""
        try:
            data = os.read(self.channel, 65536)
        except BlockingIOError:
            return []
        if not data:
            return None
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        messages = []
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                log.warning("worker %d sent a report that is not JSON: %r", self.pid, line[:80])
                continue
            if isinstance(message, dict):
                messages.append(message)
        return messages

    def close(self) -> None:
        if self.channel >= 0:
            os.close(self.channel)
            self.channel = -1
