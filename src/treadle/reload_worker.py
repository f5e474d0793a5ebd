"""The reload parent's current child process: start, stop, and what happens when it fails.

Composition layer, used only by reload.py in the parent. A child is started with the held
sockets and its stderr passed through us; when it ends by itself (the app failed to load),
the failure is logged once and a FailurePage answers on the held sockets until the next
child starts. It never imports the app and never runs a reactor.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

from treadle.reload_failure import FailurePage, OutputTail, describe

log = logging.getLogger("treadle")


class Worker:
    """The current child process; it is restarted, never reused.

    While no child runs because the last one failed, a FailurePage answers on the held
    sockets; start() closes it before the next child takes them.
    """

    def __init__(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        held: Sequence[socket.socket],
        stop_timeout_s: float,
        roots: Sequence[Path] = (),
    ) -> None:
        self.argv = list(argv)
        self.env = env
        self.held = tuple(held)
        self.stop_timeout_s = stop_timeout_s
        self.roots = tuple(roots)
        self.proc: subprocess.Popen[bytes] | None = None
        self._expected: set[int] = set()  # pids we stopped on purpose
        self._lock = threading.Lock()  # proc and page, shared with the exit watchers
        self._page: FailurePage | None = None
        self._closed = False

    def start(self) -> None:
        with self._lock:
            self._close_page()
            # Own process group: a terminal's Ctrl-C reaches only the parent, which forwards
            # it once. stderr passes through us so that a failure can be shown on the page.
            proc = subprocess.Popen(
                self.argv,
                env=self.env,
                pass_fds=[sock.fileno() for sock in self.held],
                process_group=0,
                stderr=subprocess.PIPE,
            )
            assert proc.stderr is not None
            tail = OutputTail(proc.stderr)
            self.proc = proc
        threading.Thread(target=self._report_exit, args=(proc, tail), daemon=True).start()

    def _report_exit(self, proc: subprocess.Popen[bytes], tail: OutputTail) -> None:
        """Runs in a watcher thread: when the child ends by itself (e.g. a bad import), log
        why once and answer requests with that error until the next child starts."""
        status = proc.wait()
        tail.join(2.0)  # the rest of its traceback, unless a grandchild still holds stderr
        with self._lock:
            if proc.pid in self._expected or proc is not self.proc or self._closed:
                return
            failure = describe(tail.text(), status, self.roots)
            log.warning(
                "reload: worker %d failed: %s; answering 500 until a file changes",
                proc.pid,
                failure.summary,
            )
            if self.held:
                self._page = FailurePage(self.held, failure.page())
                self._page.start()

    def _close_page(self) -> None:
        """Called with the lock held."""
        if self._page is not None:
            self._page.close()
            self._page = None

    def close(self) -> None:
        """No more children and no page: the sockets are about to be released."""
        with self._lock:
            self._closed = True
            self._close_page()

    def stop(self, signum: int = signal.SIGTERM) -> None:
        with self._lock:
            self._close_page()
            proc = self.proc
            if proc is None or proc.poll() is not None:
                return
            self._expected.add(proc.pid)
        proc.send_signal(signum)
        try:
            proc.wait(self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("reload: worker %d did not stop in time; killing it", proc.pid)
            self.kill()
            proc.wait()

    def kill(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            self._expected.add(proc.pid)
            proc.kill()
