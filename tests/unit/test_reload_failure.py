"""The reload parent's failure page: real tracebacks in, the file/line/message out, real sockets."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest

from tests.integration.wire import exchange
from treadle.reload_failure import FailurePage, OutputTail, describe


def traceback_of_import(path: Path) -> str:
    """What Python prints for an error while importing ``path`` (a real traceback)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    try:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    except Exception as error:  # noqa: BLE001 - the error under test
        return "".join(traceback.format_exception(error))
    raise AssertionError(f"{path} imported without error")


def test_the_frame_named_is_the_projects_not_the_librarys(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text("import json\n\njson.loads('{')\n")
    failure = describe(traceback_of_import(app), 1, [tmp_path])
    assert failure.summary.startswith(f"{app}, line 3: json.decoder.JSONDecodeError: ")
    assert failure.details.startswith("Traceback (most recent call last):")
    assert "json/decoder.py" in failure.details  # the whole traceback stays on the page


def test_a_chained_error_names_the_last_one(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(
        "try:\n    import not_a_module\nexcept ImportError:\n    raise RuntimeError('no db')\n"
    )
    output = "some earlier line\n" + traceback_of_import(app) + "treadle: error: failed\n"
    failure = describe(output, 2, [tmp_path])
    assert failure.summary == f"{app}, line 4: RuntimeError: no db"
    assert "No module named 'not_a_module'" in failure.details  # the cause is kept
    assert failure.details.endswith("treadle: error: failed\n")
    assert "some earlier line" not in failure.details


def test_a_syntax_error_without_a_traceback_header(tmp_path: Path) -> None:
    broken = tmp_path / "views.py"
    broken.write_text("x = 1\ndef view(:\n")
    output = subprocess.run(
        [sys.executable, str(broken)], capture_output=True, text=True, check=False
    ).stderr
    failure = describe(output, 1, [tmp_path])
    assert failure.summary == f"{broken}, line 2: SyntaxError: invalid syntax"
    assert failure.page().startswith(b"The app could not be loaded: " + str(broken).encode())


def test_no_traceback_gives_the_last_line_and_the_status() -> None:
    assert describe("", -9, []).summary == "the worker was killed by signal 9"
    failure = describe("Error: That port is already in use.\n\n", 1, [])
    assert (
        failure.summary == "Error: That port is already in use. (the worker exited with status 1)"
    )


def test_output_is_passed_through_and_its_tail_kept(tmp_path: Path) -> None:
    sink = tmp_path / "sink"
    script = "import sys\nfor i in range(20000): sys.stderr.write(f'line {i}\\n')\n"
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    assert proc.stderr is not None
    with sink.open("wb") as out:
        tail = OutputTail(proc.stderr, out)
        proc.wait(30)
        tail.join(30)
    passed = sink.read_bytes().decode().splitlines()
    assert passed == [f"line {i}" for i in range(20000)]
    kept = tail.text()
    assert kept.endswith("line 19999\n")
    assert "line 0\n" not in kept and len(kept) <= 64 * 1024


@pytest.fixture
def listener() -> socket.socket:
    sock = socket.create_server(("127.0.0.1", 0))
    yield sock
    sock.close()


def test_the_page_answers_each_connection_until_closed(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    page = FailurePage([listener], b"The app could not be loaded: boom\n")
    page.start()
    try:
        began = time.monotonic()
        raw = exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert time.monotonic() - began < 2.0
        assert raw.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
        assert raw.endswith(b"\r\n\r\nThe app could not be loaded: boom\n")
        head = exchange(port, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"Content-Length: 34\r\n" in head and head.endswith(b"\r\n\r\n")
    finally:
        page.close()
    # Closed: the socket is left to the next child, connections queue and nobody answers.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        client.settimeout(0.3)
        with pytest.raises(TimeoutError):
            client.recv(1)


def test_a_worker_that_served_is_judged_by_what_followed(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text("x = 1 // 0\n")
    old_request_error = traceback_of_import(app)
    output = f"[INFO] Listening at: http://127.0.0.1:8000\n{old_request_error}"
    failure = describe(output + "[INFO] Listening at: http://127.0.0.1:8000\n", -11, [tmp_path])
    assert failure.summary == "the worker was killed by signal 11"
    assert failure.page().startswith(b"The worker stopped: the worker was killed by signal 11")
    before = describe(old_request_error, 1, [tmp_path])
    assert before.page().startswith(f"The app could not be loaded: {app}, line 1: ".encode())
