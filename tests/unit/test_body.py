"""wsgi.input bodies: buffered (memory or spooled file), and the shared empty body."""

from __future__ import annotations

import io
import os
import time
import wsgiref.validate
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from treadle.wsgi.body import EMPTY_BODY, BufferedBody


def buffered(chunks: list[bytes], threshold: int = 1 << 20) -> BufferedBody:
    body = BufferedBody(spool_threshold_bytes=threshold)
    for chunk in chunks:
        body.feed(chunk)
    body.finish()
    return body


# -- file-like behaviour -----------------------------------------------------------

MAKERS = [pytest.param(buffered, id="buffered")]


@pytest.mark.parametrize("make", MAKERS)
def test_read_all_and_sized(make: Callable[[list[bytes]], Any]) -> None:
    body = make([b"hello ", b"wor", b"ld"])
    assert body.read(0) == b""
    assert body.read(3) == b"hel"
    assert body.read(5) == b"lo wo"
    assert body.read() == b"rld"
    assert body.read() == b""
    assert body.read(10) == b""


@pytest.mark.parametrize("make", MAKERS)
def test_read_none_means_all(make: Callable[[list[bytes]], Any]) -> None:
    assert make([b"ab", b"cd"]).read(None) == b"abcd"


@pytest.mark.parametrize("make", MAKERS)
def test_readline_honours_size(make: Callable[[list[bytes]], Any]) -> None:
    body = make([b"first li", b"ne\nsec", b"ond\n", b"tail"])
    assert body.readline(5) == b"first"
    assert body.readline() == b" line\n"
    assert body.readline(100) == b"second\n"
    assert body.readline(0) == b""
    assert body.readline() == b"tail"
    assert body.readline() == b""


@pytest.mark.parametrize("make", MAKERS)
def test_readlines_and_iteration(make: Callable[[list[bytes]], Any]) -> None:
    assert make([b"a\nb", b"b\n", b"c"]).readlines() == [b"a\n", b"bb\n", b"c"]
    assert make([b"a\nbb\nccc\nd\n"]).readlines(3) == [b"a\n", b"bb\n"]
    assert list(make([b"x\n", b"y\nz"])) == [b"x\n", b"y\n", b"z"]


@pytest.mark.parametrize("make", MAKERS)
def test_wsgiref_validate_input_wrapper(make: Callable[[list[bytes]], Any]) -> None:
    """The validator asserts read/readline/readlines/__iter__ signatures and bytes results."""
    body = make([b"line one\n", b"line two\nline three\nrest"])
    got: list[object] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        stream = environ["wsgi.input"]
        got.append(stream.readline())
        got.append(stream.readline(4))
        got.append(stream.read(5))
        got.append(stream.readlines(1))
        got.append(list(stream))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b""]

    environ = {
        "REQUEST_METHOD": "POST",
        "SERVER_NAME": "h",
        "SERVER_PORT": "80",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": body,
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    result: Any = wsgiref.validate.validator(app)(environ, lambda status, headers: None)  # type: ignore[arg-type]
    list(result)
    result.close()
    assert got == [b"line one\n", b"line", b" two\n", [b"line three\n"], [b"rest"]]


# -- hypothesis: any chunking, any read sequence, same bytes as a file ------------------

OPS = st.lists(
    st.tuples(
        st.sampled_from(["read", "readline", "readlines"]), st.integers(min_value=-1, max_value=40)
    ),
    max_size=30,
)
CHUNKS = st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\x00", b"\n")), max_size=12)


def check_ops(body: Any, chunks: list[bytes], ops: list[tuple[str, int]]) -> None:
    data = b"".join(chunks)
    reference = io.BytesIO(data)
    out: list[bytes] = []
    for name, size in ops:
        got = getattr(body, name)(size)
        assert got == getattr(reference, name)(size), (name, size)
        out.extend(got if isinstance(got, list) else [got])
    out.append(body.read())
    assert b"".join(out) == data


@given(chunks=CHUNKS, ops=OPS, threshold=st.integers(min_value=0, max_value=64))
# A spooled body once gave both lines for readlines(1); BytesIO gives one.
@example(chunks=[b"\n\n"], ops=[("readlines", 1)], threshold=0)
def test_buffered_any_split_any_reads(
    chunks: list[bytes], ops: list[tuple[str, int]], threshold: int
) -> None:
    body = buffered(chunks, threshold)
    try:
        assert body.length == sum(map(len, chunks))
        assert body.spooled == (body.length > threshold)
        check_ops(body, chunks, ops)
    finally:
        body.close()


# -- BufferedBody -------------------------------------------------------------------------


def test_small_body_stays_in_memory() -> None:
    body = buffered([b"x" * 100, b"y" * 100], threshold=200)
    assert not body.spooled
    assert body.length == 200
    assert body.read() == b"x" * 100 + b"y" * 100


def test_body_past_threshold_spools_to_a_real_file() -> None:
    chunk = bytes(range(256)) * 64  # 16 KiB
    body = BufferedBody(spool_threshold_bytes=40_000)
    body.feed(chunk)
    body.feed(chunk)
    assert not body.spooled
    body.feed(chunk)
    assert body.spooled
    body.feed(b"end\n")
    body.finish()
    assert body.length == 3 * len(chunk) + 4
    assert body.read(len(chunk)) == chunk
    assert body.read() == chunk * 2 + b"end\n"
    body.close()
    with pytest.raises(ValueError):
        body.read()


def test_read_before_finish_is_an_error() -> None:
    body = BufferedBody(spool_threshold_bytes=10)
    body.feed(b"abc")
    with pytest.raises(RuntimeError):
        body.read()


def test_close_is_idempotent() -> None:
    body = buffered([b"abc"], threshold=1)
    body.close()
    body.close()


def test_empty_buffered_body() -> None:
    body = buffered([])
    assert body.length == 0
    assert body.read() == b""
    assert body.readline() == b""


# -- EMPTY_BODY --------------------------------------------------------------------------


def test_empty_body_reads_nothing_and_is_shared() -> None:
    from treadle.wsgi import body as body_module

    assert EMPTY_BODY is body_module.EMPTY_BODY
    assert EMPTY_BODY.read() == b""
    assert EMPTY_BODY.read(10) == b""
    assert EMPTY_BODY.readline() == b""
    assert EMPTY_BODY.readline(5) == b""
    assert EMPTY_BODY.readlines() == []
    assert list(EMPTY_BODY) == []
    EMPTY_BODY.close()
    assert EMPTY_BODY.read() == b""
    with pytest.raises(AttributeError):
        EMPTY_BODY.leak = 1  # type: ignore[attr-defined]


# -- the spool writer thread ---------------------------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_a_spooled_body_dropped_mid_upload_gives_its_file_back() -> None:
    before = open_fds()
    chunk = b"u" * 65536
    for _ in range(20):  # clients that leave mid-upload: fed, never finished, closed
        body = BufferedBody(spool_threshold_bytes=1)
        for _ in range(16):
            body.feed(chunk)
        body.close()
    deadline = time.monotonic() + 10
    while open_fds() > before:  # the writer closes each file after its queued writes
        assert time.monotonic() < deadline, "spool files left open"
        time.sleep(0.01)  # polling a condition with a deadline


def test_a_large_spooled_body_reads_back_whole_while_the_writer_catches_up() -> None:
    body = BufferedBody(spool_threshold_bytes=0)
    pieces = [bytes([index % 256]) * 65536 for index in range(64)]  # 4 MiB
    for piece in pieces:
        body.feed(piece)
    body.finish()
    try:
        assert body.spooled and body.length == 64 * 65536
        assert body.readline(10) == pieces[0][:10]
        assert body.read() == b"".join(pieces)[10:]
    finally:
        body.close()
    with pytest.raises(ValueError):
        body.read()
