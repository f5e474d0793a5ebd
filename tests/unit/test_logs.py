"""The access-log writer: lines leave in order through a thread, and a stuck target drops."""

from __future__ import annotations

import logging
import threading
import time

from treadle.logs import AccessLogWriter, FileLines

DEADLINE_S = 10.0


class Stuck:
    """A log target that takes nothing until let go (a full pipe nobody reads)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.go = threading.Event()
        self.lines: list[str] = []

    def write(self, line: str) -> None:
        self.entered.set()
        self.go.wait(DEADLINE_S)
        self.lines.append(line)


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("treadle.access", logging.INFO, __file__, 1, message, None, None)


def test_a_stuck_target_never_blocks_the_caller_and_overflow_is_counted(caplog) -> None:
    target = Stuck()
    writer = AccessLogWriter(target.write, max_lines=5)
    try:
        writer.emit(record("line 0"))
        assert target.entered.wait(DEADLINE_S)  # the writer thread is stuck on line 0
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="treadle"):
            for index in range(1, 100):
                writer.emit(record(f"line {index}"))
        assert time.monotonic() - started < 1.0, "emit() must never wait for the target"
        # Five more wait in the queue; the other 94 are dropped and counted.
        assert writer.dropped == 94
        warned = [r.getMessage() for r in caplog.records if "dropped so far" in r.getMessage()]
        assert [message.split()[2] for message in warned] == ["1", "10"]
    finally:
        target.go.set()
        writer.close()
    assert target.lines == [f"line {index}\n" for index in range(6)]


def test_close_writes_what_is_queued_in_order() -> None:
    target = Stuck()
    target.go.set()
    writer = AccessLogWriter(target.write)
    for index in range(50):
        writer.emit(record(f"line {index}"))
    writer.close()
    assert target.lines == [f"line {index}\n" for index in range(50)]


def test_close_gives_up_on_a_stuck_target_in_bounded_time() -> None:
    target = Stuck()
    writer = AccessLogWriter(target.write, max_lines=1)
    writer.emit(record("stuck"))
    assert target.entered.wait(DEADLINE_S)
    writer.emit(record("queued"))
    started = time.monotonic()
    writer.close(timeout_s=0.2)
    assert time.monotonic() - started < 2.0
    target.go.set()


def test_reopen_after_logrotate_moved_the_file_writes_to_a_new_file(tmp_path) -> None:
    path = tmp_path / "access.log"
    lines = FileLines(str(path))
    writer = AccessLogWriter(lines)
    try:
        writer.emit(record("before"))
        deadline = time.monotonic() + DEADLINE_S
        while path.read_text() != "before\n":
            assert time.monotonic() < deadline, "the first line was never written"
            time.sleep(0.01)
        path.rename(tmp_path / "access.log.1")  # what logrotate does
        writer.reopen()
        writer.emit(record("after"))
    finally:
        writer.close()
        lines.stream.close()
    assert (tmp_path / "access.log.1").read_text() == "before\n"
    assert path.read_text() == "after\n"
