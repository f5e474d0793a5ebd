"""wsgi.input bodies: buffered (memory or spooled file), streaming across real threads, empty."""

from __future__ import annotations

import io
import threading
import wsgiref.validate
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from treadle.errors import RequestCancelled
from treadle.wsgi.body import EMPTY_BODY, BufferedBody, StreamingBody

DEADLINE_S = 10.0


class Worker:
    """Runs ``target`` in a real thread and keeps its result or exception."""

    def __init__(self, target: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread_id: int | None = None
        self._target = target
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.thread_id = threading.get_ident()
        try:
            self.result = self._target()
        except BaseException as exc:
            self.error = exc

    def join(self) -> Any:
        self._thread.join(DEADLINE_S)
        assert not self._thread.is_alive(), "reader still blocked after the deadline"
        if self.error is not None:
            raise self.error
        return self.result


class Recorder:
    """A callback that records the threads it was called in and can be awaited."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.event = threading.Event()

    def __call__(self) -> None:
        self.calls.append(threading.get_ident())
        self.event.set()

    def wait(self) -> None:
        assert self.event.wait(DEADLINE_S), "callback not called before the deadline"


def streaming(high_water_bytes: int = 256 * 1024) -> tuple[StreamingBody, Recorder, Recorder]:
    first_read, drained = Recorder(), Recorder()
    body = StreamingBody(
        on_first_read=first_read, on_drained=drained, high_water_bytes=high_water_bytes
    )
    return body, first_read, drained


def buffered(chunks: list[bytes], threshold: int = 1 << 20) -> BufferedBody:
    body = BufferedBody(spool_threshold_bytes=threshold)
    for chunk in chunks:
        body.feed(chunk)
    body.finish()
    return body


def fed_streaming(chunks: list[bytes]) -> StreamingBody:
    body, _, _ = streaming()
    for chunk in chunks:
        body.feed(chunk)
    body.finish()
    return body


# -- shared file-like behaviour, both classes --------------------------------------------

MAKERS = [pytest.param(buffered, id="buffered"), pytest.param(fed_streaming, id="streaming")]


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


@given(chunks=CHUNKS, ops=OPS)
def test_streaming_any_split_any_reads(chunks: list[bytes], ops: list[tuple[str, int]]) -> None:
    check_ops(fed_streaming(chunks), chunks, ops)


@settings(max_examples=40, deadline=None)
@given(chunks=CHUNKS, ops=OPS)
def test_streaming_any_split_any_reads_with_a_feeder_thread(
    chunks: list[bytes], ops: list[tuple[str, int]]
) -> None:
    body, _, _ = streaming(high_water_bytes=1 << 20)

    def feed_all() -> None:
        for chunk in chunks:
            body.feed(chunk)
        body.finish()

    feeder = Worker(feed_all)
    check_ops(body, chunks, ops)
    feeder.join()


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


# -- StreamingBody across threads ------------------------------------------------------


def test_blocked_read_is_released_by_feed() -> None:
    body, first_read, _ = streaming()
    reader = Worker(lambda: body.read(5))
    first_read.wait()  # the reader is about to block: nothing was fed yet
    body.feed(b"abc")
    body.feed(b"defg")
    assert reader.join() == b"abcde"
    assert first_read.calls == [reader.thread_id]


def test_blocked_read_all_is_released_by_finish() -> None:
    body, first_read, _ = streaming()
    reader = Worker(body.read)
    first_read.wait()
    body.feed(b"part one, ")
    body.feed(b"part two")
    body.finish()
    assert reader.join() == b"part one, part two"
    assert body.read(1) == b""


def test_short_read_at_the_end() -> None:
    body, first_read, _ = streaming()
    reader = Worker(lambda: body.read(100))
    first_read.wait()
    body.feed(b"only this")
    body.finish()
    assert reader.join() == b"only this"


def test_blocked_readline_waits_for_the_newline() -> None:
    body, first_read, _ = streaming()
    body.feed(b"no newline yet")
    reader = Worker(body.readline)
    first_read.wait()
    body.feed(b" ... now\nnext")
    assert reader.join() == b"no newline yet ... now\n"
    body.finish()
    assert body.readline() == b"next"


def test_blocked_read_is_released_by_fail_and_later_reads_raise() -> None:
    body, first_read, _ = streaming()
    body.feed(b"ab")
    reader = Worker(lambda: body.read(10))
    first_read.wait()
    body.fail(RequestCancelled("client went away"))
    with pytest.raises(RequestCancelled, match="client went away"):
        reader.join()
    with pytest.raises(RequestCancelled):
        body.read(1)
    with pytest.raises(RequestCancelled):
        body.readline()
    assert body.feed(b"late data") is False


def test_close_releases_a_blocked_reader() -> None:
    body, first_read, _ = streaming()
    reader = Worker(body.read)
    first_read.wait()
    body.close()
    with pytest.raises(ValueError):
        reader.join()


def test_on_first_read_not_called_while_data_is_there() -> None:
    body, first_read, _ = streaming()
    body.feed(b"early body\n")  # the client sent the body without waiting for 100 Continue
    assert body.read(5) == b"early"
    assert body.readline() == b" body\n"
    body.finish()
    assert body.read() == b""
    assert first_read.calls == []


def test_on_first_read_called_once() -> None:
    body, first_read, _ = streaming()
    reader = Worker(lambda: [body.read(1), body.read(1), body.read(1)])
    first_read.wait()
    body.feed(b"a")
    body.feed(b"b")
    body.feed(b"c")
    assert reader.join() == [b"a", b"b", b"c"]
    assert len(first_read.calls) == 1


def test_feed_reports_high_water_and_drain_fires_below_half() -> None:
    body, _, drained = streaming(high_water_bytes=10)
    assert body.feed(b"12345") is False
    assert body.feed(b"67890") is False  # exactly at high water is not over it
    assert body.feed(b"abcde") is True  # 15 buffered: pause
    assert body.feed(b"f") is True  # still over
    reader = Worker(lambda: body.read(6))  # 10 left: not under half
    assert reader.join() == b"123456"
    assert drained.calls == []
    reader = Worker(lambda: body.read(6))  # 4 left: under half, resume
    assert reader.join() == b"7890ab"
    assert drained.calls == [reader.thread_id]
    assert Worker(lambda: body.read(4)).join() == b"cdef"
    assert len(drained.calls) == 1  # only once per pause


def test_backpressure_end_to_end_with_real_threads() -> None:
    """A feeder that honours pause/resume and a line reader agree on every byte."""
    lines = [b"%06d some payload for the line\n" % i for i in range(3000)]
    data = b"".join(lines)
    resumed = threading.Event()
    body = StreamingBody(on_first_read=lambda: None, on_drained=resumed.set, high_water_bytes=4096)
    pauses = 0

    def feed() -> None:
        nonlocal pauses
        for start in range(0, len(data), 1000):
            if body.feed(data[start : start + 1000]):
                pauses += 1
                assert resumed.wait(DEADLINE_S), "never resumed"
                resumed.clear()
        body.finish()

    feeder = Worker(feed)
    reader = Worker(lambda: list(body))
    try:
        assert reader.join() == lines
        feeder.join()
    finally:
        body.fail(RequestCancelled("test over"))  # frees a stuck thread on failure
    assert pauses > 0
    assert body.length == len(data)


@pytest.mark.parametrize("how", ["readline", "read"])
def test_reads_longer_than_high_water_do_not_deadlock(how: str) -> None:
    """A line (or a read(n)) bigger than high water must resume a paused transport."""
    line = b"z" * 50_000 + b"\n"
    data = line * 3
    resumed = threading.Event()
    body = StreamingBody(on_first_read=lambda: None, on_drained=resumed.set, high_water_bytes=1024)

    def feed() -> None:
        for start in range(0, len(data), 700):
            if body.feed(data[start : start + 700]):
                assert resumed.wait(DEADLINE_S), "paused forever"
                resumed.clear()
        body.finish()

    def read() -> list[bytes]:
        if how == "readline":
            return [body.readline() for _ in range(3)] + [body.read()]
        return [body.read(len(line) * 2), body.read()]

    feeder = Worker(feed)
    reader = Worker(read)
    try:
        got = reader.join()
        feeder.join()
    finally:
        body.fail(RequestCancelled("test over"))  # frees a stuck thread on failure
    expected = [line, line, line, b""] if how == "readline" else [line * 2, line]
    assert got == expected
