"""wsgi/body.py GrowingUpload: a Mongrel2 upload read by the app while it is being written.

Bridge tier: a real file, a real app thread (this test's), and the reactor's calls
(complete, fail) made from the test. Waits are bounded by join timeouts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from treadle.wsgi.body import GrowingUpload, UploadFailed

_open: list[GrowingUpload] = []


def opened(path: Path, data: bytes, length: int, stall_s: float = 5.0) -> GrowingUpload:
    path.write_bytes(data)
    body = GrowingUpload(path.open("rb"), length, stall_s)
    _open.append(body)
    return body


@pytest.fixture(autouse=True)
def _close_bodies() -> Iterator[None]:
    """As the app's job does after the response."""
    yield
    while _open:
        _open.pop().close()


class Reader(threading.Thread):
    """An app thread reading the body: what it read, or what it raised."""

    def __init__(self, call) -> None:  # noqa: ANN001
        super().__init__(daemon=True)
        self.call = call
        self.result: bytes | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.call()
        except BaseException as error:  # noqa: BLE001 - handed to the test
            self.error = error


def test_a_read_waits_for_the_bytes_it_asks_for(tmp_path: Path) -> None:
    path = tmp_path / "up"
    body = opened(path, b"abc", 10)
    reader = Reader(lambda: body.read(8))
    reader.start()
    reader.join(0.2)
    assert reader.is_alive()  # 3 of 8 bytes there: it waits, as a file read would not
    with path.open("ab") as growing:
        growing.write(b"defghij")
    reader.join(5)
    assert reader.result == b"abcdefgh"
    assert body.read() == b"ij"  # the rest of the declared length
    assert body.read() == b""  # and never past it


def test_lines_are_read_across_writes(tmp_path: Path) -> None:
    path = tmp_path / "up"
    body = opened(path, b"one\ntw", 13)
    assert body.readline() == b"one\n"
    reader = Reader(body.readline)
    reader.start()
    with path.open("ab") as growing:
        growing.write(b"o\nthree")
    reader.join(5)
    assert reader.result == b"two\n"
    body.complete()
    assert body.readline(2) == b"th"
    assert body.readlines() == [b"ree"]


def test_a_body_shorter_than_declared_ends_once_complete(tmp_path: Path) -> None:
    path = tmp_path / "up"
    body = opened(path, b"abc", 10)
    reader = Reader(body.read)
    reader.start()
    reader.join(0.2)
    body.complete()
    reader.join(5)
    assert reader.result == b"abc"


def test_a_failed_upload_wakes_the_reader_with_an_error(tmp_path: Path) -> None:
    body = opened(tmp_path / "up", b"abc", 10)
    reader = Reader(body.read)
    reader.start()
    reader.join(0.2)
    started = time.monotonic()
    body.fail("the client went away")
    reader.join(5)
    assert time.monotonic() - started < 2  # woken, not left to the 5 s stall limit
    assert isinstance(reader.error, UploadFailed)
    assert "the client went away" in str(reader.error)


def test_an_upload_that_stops_growing_fails_the_read(tmp_path: Path) -> None:
    body = opened(tmp_path / "up", b"abc", 10, stall_s=0.3)
    with pytest.raises(UploadFailed, match="no new bytes"):
        body.read()


def test_a_closed_body_refuses_reads(tmp_path: Path) -> None:
    body = opened(tmp_path / "up", b"abc", 3)
    body.close()
    with pytest.raises(ValueError, match="closed"):
        body.read()


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(min_size=0, max_size=300).map(lambda b: b.replace(b"x", b"\n")),
    sizes=st.lists(st.integers(min_value=-1, max_value=40), min_size=1, max_size=30),
    lines=st.lists(st.booleans(), min_size=1, max_size=30),
)
def test_any_mix_of_reads_gives_the_body_back(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, sizes: list[int], lines: list[bool]
) -> None:
    body = opened(tmp_path_factory.mktemp("up") / "f", data, len(data))
    body.complete()
    out = b""
    for size, line in zip(sizes * 20, lines * 20, strict=False):
        piece = body.readline(size) if line else body.read(size)
        if size == 0:
            assert piece == b""
        elif not piece:
            break
        out += piece
    out += body.read()
    body.close()
    assert out == data
