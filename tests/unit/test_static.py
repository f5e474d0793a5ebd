"""Static files: real files in tmp_path through StaticFiles.respond and FileProducer."""

from __future__ import annotations

import io
import os
from email.utils import formatdate
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.interfaces import IConsumer
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from treadle.django.mounts import is_hashed_name
from treadle.errors import RequestCancelled
from treadle.http.events import RequestHead
from treadle.http.file_producer import FileProducer
from treadle.static import Mount, StaticFiles, StaticResponse, relative_path

MTIME_S = 1_700_000_000  # fixed so Last-Modified is predictable
SECRET = b"top secret, outside the root\n"
CSS = b"body { color: red; }\n" * 10
BIG = bytes(range(256)) * 400  # 102400 bytes: above the inline threshold, streamed


def write(path: Path, data: bytes, mtime_s: int = MTIME_S) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime_s, mtime_s))
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write(tmp_path / "secret.txt", SECRET)
    root = tmp_path / "static"
    write(root / "app.css", CSS)
    write(root / "big.bin", BIG)
    write(root / "sub" / "a b.js", b"alert(1);\n")
    write(root / "app.0123456789ab.css", CSS)
    os.symlink(tmp_path / "secret.txt", root / "leak.txt")
    os.symlink(root / "app.css", root / "alias.css")
    return root


@pytest.fixture
def files(root: Path) -> StaticFiles:
    return StaticFiles([Mount("/static/", root)])


def request(
    path: bytes, headers: list[tuple[bytes, bytes]] | None = None, method: bytes = b"GET"
) -> RequestHead:
    return RequestHead(method, path, path, b"", "1.1", [(b"Host", b"x"), *(headers or [])])


def header(response: StaticResponse, name: bytes) -> bytes | None:
    values = [v for k, v in response.headers if k.lower() == name.lower()]
    assert len(values) <= 1, response.headers
    return values[0] if values else None


def content(response: StaticResponse) -> bytes:
    """What the client receives as the body: inline bytes or the file range."""
    if response.path is None:
        return response.body
    with open(response.path, "rb") as file:
        file.seek(response.offset)
        return file.read(response.length)


# --- 200, content types, caching -------------------------------------------------------------


def test_get_small_file_inline(files: StaticFiles) -> None:
    response = files.respond(request(b"/static/app.css"))
    assert response.status == 200
    assert response.body == CSS and response.path is None
    assert header(response, b"content-type") == b"text/css; charset=utf-8"
    assert header(response, b"content-length") == b"%d" % len(CSS)
    assert header(response, b"last-modified") == formatdate(MTIME_S, usegmt=True).encode()
    assert header(response, b"etag") is not None
    assert header(response, b"accept-ranges") == b"bytes"
    assert header(response, b"cache-control") == b"public, max-age=60"
    assert header(response, b"vary") is None
    assert not {b"date", b"server", b"connection"} & {k.lower() for k, _ in response.headers}


def test_get_large_file_streams_from_path(files: StaticFiles, root: Path) -> None:
    response = files.respond(request(b"/static/big.bin"))
    assert response.status == 200
    assert response.path == root / "big.bin"
    assert (response.offset, response.length, response.body) == (0, len(BIG), b"")
    assert header(response, b"content-length") == b"%d" % len(BIG)
    assert header(response, b"content-type") == b"application/octet-stream"
    assert content(response) == BIG


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("x.js", b"text/javascript; charset=utf-8"),
        ("x.json", b"application/json; charset=utf-8"),
        ("x.svg", b"image/svg+xml; charset=utf-8"),
        ("x.xml", b"text/xml; charset=utf-8"),
        ("x.html", b"text/html; charset=utf-8"),
        ("x.png", b"image/png"),
        ("x.woff2", b"font/woff2"),
        ("x.unknownext", b"application/octet-stream"),
    ],
)
def test_content_type(root: Path, files: StaticFiles, name: str, expected: bytes) -> None:
    write(root / name, b"1")
    assert header(files.respond(request(b"/static/" + name.encode())), b"content-type") == expected


def test_a_mount_s_immutable_names_are_cached_for_a_year(root: Path) -> None:
    files = StaticFiles([Mount("/static/", root, immutable=is_hashed_name)])
    response = files.respond(request(b"/static/app.0123456789ab.css"))
    assert response.status == 200
    assert header(response, b"cache-control") == b"max-age=31536000, public, immutable"
    assert header(files.respond(request(b"/static/app.css")), b"cache-control") == (
        b"public, max-age=60"
    )


def test_without_a_rule_no_name_is_immutable(files: StaticFiles) -> None:
    response = files.respond(request(b"/static/app.0123456789ab.css"))
    assert header(response, b"cache-control") == b"public, max-age=60"


@pytest.mark.parametrize(
    ("name", "hashed"),
    [
        ("app.0123456789ab.css", True),
        ("app.0123456789ab.min.js", False),  # the hash comes last before the extension
        ("app.0123456789AB.css", False),  # collectstatic writes lower-case hex
        ("app.0123456789a.css", False),
        ("app.css", False),
        ("0123456789ab.css", False),
    ],
)
def test_django_hashed_name_rule(name: str, hashed: bool) -> None:
    assert is_hashed_name(name) is hashed


def test_symlink_inside_root_and_encoded_name(files: StaticFiles) -> None:
    assert files.respond(request(b"/static/alias.css")).body == CSS
    response = files.respond(request(b"/static/sub/a%20b.js"))
    assert response.body == b"alert(1);\n"
    assert header(response, b"content-type") == b"text/javascript; charset=utf-8"


def test_file_changed_on_disk_is_revalidated(files: StaticFiles, root: Path) -> None:
    first = files.respond(request(b"/static/app.css"))
    write(root / "app.css", b"new content\n", mtime_s=MTIME_S + 10)
    second = files.respond(request(b"/static/app.css"))
    assert second.body == b"new content\n"
    assert header(second, b"etag") != header(first, b"etag")
    (root / "app.css").unlink()
    assert files.respond(request(b"/static/app.css")).status == 404


def test_other_methods_get_405(files: StaticFiles) -> None:
    for method in (b"POST", b"PUT", b"DELETE", b"OPTIONS"):
        response = files.respond(request(b"/static/app.css", method=method))
        assert response.status == 405
        assert header(response, b"allow") == b"GET, HEAD"


def test_head_has_get_headers_and_no_body(files: StaticFiles) -> None:
    for path in (b"/static/app.css", b"/static/big.bin"):
        get = files.respond(request(path))
        head = files.respond(request(path, method=b"HEAD"))
        assert head.status == 200
        assert head.headers == get.headers
        assert (head.body, head.path, head.length) == (b"", None, 0)
    # RFC 9110 §14.2: Range is for GET only.
    head = files.respond(request(b"/static/big.bin", [(b"Range", b"bytes=0-9")], b"HEAD"))
    assert head.status == 200 and header(head, b"content-length") == b"%d" % len(BIG)


# --- conditional requests --------------------------------------------------------------------


def etag_of(files: StaticFiles, path: bytes = b"/static/app.css") -> bytes:
    tag = header(files.respond(request(path)), b"etag")
    assert tag is not None
    return tag


def test_if_none_match_gives_304(files: StaticFiles) -> None:
    tag = etag_of(files)
    for field in (tag, b"W/" + tag, b'"other", ' + tag, b"*"):
        response = files.respond(request(b"/static/app.css", [(b"If-None-Match", field)]))
        assert response.status == 304, field
        assert (response.body, response.path, response.length) == (b"", None, 0)
        assert header(response, b"etag") == tag
        assert header(response, b"cache-control") == b"public, max-age=60"
        assert header(response, b"content-length") is None
    response = files.respond(request(b"/static/app.css", [(b"If-None-Match", b'"other"')]))
    assert response.status == 200


def test_if_modified_since_gives_304(files: StaticFiles) -> None:
    def status(date: int) -> int:
        field = formatdate(date, usegmt=True).encode()
        return files.respond(request(b"/static/app.css", [(b"If-Modified-Since", field)])).status

    assert status(MTIME_S) == 304
    assert status(MTIME_S + 3600) == 304
    assert status(MTIME_S - 1) == 200
    garbage = [(b"If-Modified-Since", b"not a date")]
    assert files.respond(request(b"/static/app.css", garbage)).status == 200


def test_if_none_match_wins_over_if_modified_since(files: StaticFiles) -> None:
    fields = [
        (b"If-None-Match", b'"stale"'),
        (b"If-Modified-Since", formatdate(MTIME_S, usegmt=True).encode()),
    ]
    assert files.respond(request(b"/static/app.css", fields)).status == 200


def test_if_match_and_if_unmodified_since_give_412(files: StaticFiles) -> None:
    tag = etag_of(files)
    assert files.respond(request(b"/static/app.css", [(b"If-Match", tag)])).status == 200
    assert files.respond(request(b"/static/app.css", [(b"If-Match", b'"x"')])).status == 412
    old = [(b"If-Unmodified-Since", formatdate(MTIME_S - 60, usegmt=True).encode())]
    assert files.respond(request(b"/static/app.css", old)).status == 412


# --- ranges ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [b"/static/app.css", b"/static/big.bin"])
@pytest.mark.parametrize(
    ("spec", "start", "stop"),
    [
        (b"bytes=2-5", 2, 6),
        (b"bytes=10-", 10, None),
        (b"bytes=-7", -7, None),
        (b"bytes=3-999999999", 3, None),
        (b"bytes=-999999999", 0, None),
        (b"bytes=0-0", 0, 1),
    ],
)
def test_single_range_gives_206(
    files: StaticFiles, path: bytes, spec: bytes, start: int, stop: int | None
) -> None:
    full = CSS if path.endswith(b".css") else BIG
    expected = full[start:stop]
    response = files.respond(request(path, [(b"Range", spec)]))
    assert response.status == 206
    assert content(response) == expected
    first = full.index(expected) if start >= 0 else len(full) + start
    last = first + len(expected) - 1
    assert header(response, b"content-range") == b"bytes %d-%d/%d" % (first, last, len(full))
    assert header(response, b"content-length") == b"%d" % len(expected)


@pytest.mark.parametrize("spec", [b"bytes=999999-", b"bytes=-0", b"bytes=210-300"])
def test_unsatisfiable_range_gives_416(files: StaticFiles, spec: bytes) -> None:
    response = files.respond(request(b"/static/app.css", [(b"Range", spec)]))
    assert response.status == 416
    assert header(response, b"content-range") == b"bytes */%d" % len(CSS)


@pytest.mark.parametrize(
    "spec", [b"bytes=0-1,4-5", b"bytes=5-2", b"items=0-1", b"bytes=a-b", b"bytes=-", b"bytes=1"]
)
def test_multiple_or_invalid_ranges_give_200(files: StaticFiles, spec: bytes) -> None:
    response = files.respond(request(b"/static/app.css", [(b"Range", spec)]))
    assert response.status == 200 and response.body == CSS


def test_if_range(files: StaticFiles) -> None:
    tag = etag_of(files)
    date = formatdate(MTIME_S, usegmt=True).encode()

    def status(if_range: bytes) -> int:
        fields = [(b"Range", b"bytes=0-3"), (b"If-Range", if_range)]
        return files.respond(request(b"/static/app.css", fields)).status

    assert status(tag) == 206
    assert status(date) == 206
    assert status(b'"stale"') == 200
    assert status(b"W/" + tag) == 200  # §13.1.5: strong comparison only
    assert status(formatdate(MTIME_S - 5, usegmt=True).encode()) == 200


# --- unsafe paths ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        b"/static/../secret.txt",
        b"/static/%2e%2e/secret.txt",
        b"/static/%2E%2E/secret.txt",
        b"/static/%2E./secret.txt",
        b"/static/.%2e/secret.txt",
        b"/static/sub/../../secret.txt",
        b"/static/..%2fsecret.txt",
        b"/static/..%2Fsecret.txt",
        b"/static/..%5csecret.txt",
        b"/static/..\\secret.txt",
        b"/static/sub%2f..%2f..%2fsecret.txt",
        b"/static/%2e%2e%2fsecret.txt",
        b"/static//etc/passwd",
        b"/static/%2fetc%2fpasswd",
        b"/static/./app.css",
        b"/static/sub//a%20b.js",
        b"/static/app.css%00.png",
        b"/static/app.css\x00",
        b"/static/%ff.css",
        b"/static/leak.txt",  # symlink leaving the root
        b"/static/",
        b"/static/sub",  # a directory
        b"/static/sub/",
        b"/static/missing.css",
        b"/elsewhere/app.css",
    ],
)
def test_unsafe_or_missing_paths_give_404(files: StaticFiles, path: bytes) -> None:
    response = files.respond(request(path))
    assert response.status == 404
    assert response.path is None and SECRET not in response.body
    assert header(response, b"content-type") == b"text/plain; charset=utf-8"


def test_relative_path_refuses_rather_than_normalises() -> None:
    assert relative_path(b"sub/a%20b.js") == "sub/a b.js"
    assert relative_path(b"%C3%A9t%C3%A9.css") == "\u00e9t\u00e9.css"
    for raw in (b"", b"a/", b"/a", b"a//b", b"a/./b", b"a/%2e%2e/b", b"a%2fb", b"a%5cb"):
        assert relative_path(raw) is None, raw


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(
                ["..", ".", "", "%2e%2e", "%2E.", ".%2e", "%2f", "%5c", "\\", "leak.txt", "sub"]
                + ["secret.txt", "app.css", "%00", "%2e", "~", "static", "%252e%252e", "//"]
            ),
            st.text(max_size=12),
        ),
        max_size=8,
    ),
    st.booleans(),
)
def test_no_path_resolves_outside_the_root(
    files: StaticFiles, root: Path, segments: list[str], encode: bool
) -> None:
    text = "/".join(segments)
    raw = quote(text, safe="/%\\").encode() if encode else text.encode("utf-8", "surrogatepass")
    response = files.respond(request(b"/static/" + raw))
    assert SECRET not in response.body
    if response.path is not None:
        real = os.path.realpath(response.path)
        assert real.startswith(os.path.realpath(root) + os.sep)


# --- precompressed siblings ------------------------------------------------------------------


@pytest.fixture
def compressed(root: Path) -> Path:
    write(root / "app.css.br", b"BROTLI-BYTES")
    write(root / "app.css.gz", b"GZIP-BYTES")
    write(root / "only.js", b"x")
    write(root / "only.js.gz", b"gz")
    return root


@pytest.mark.parametrize(
    ("accept", "body", "coding"),
    [
        (b"gzip, deflate, br", b"BROTLI-BYTES", b"br"),
        (b"br;q=0.1, gzip;q=1.0", b"BROTLI-BYTES", b"br"),
        (b"gzip", b"GZIP-BYTES", b"gzip"),
        (b"x-gzip", b"GZIP-BYTES", b"gzip"),
        (b"br;q=0, gzip", b"GZIP-BYTES", b"gzip"),
        (b"*", b"BROTLI-BYTES", b"br"),
        (b"*;q=0, identity", CSS, None),
        (b"deflate", CSS, None),
        (None, CSS, None),
    ],
)
def test_precompressed_selection(
    compressed: Path, files: StaticFiles, accept: bytes | None, body: bytes, coding: bytes | None
) -> None:
    fields = [] if accept is None else [(b"Accept-Encoding", accept)]
    response = files.respond(request(b"/static/app.css", fields))
    assert response.status == 200 and response.body == body
    assert header(response, b"content-encoding") == coding
    assert header(response, b"vary") == b"Accept-Encoding"
    assert header(response, b"content-type") == b"text/css; charset=utf-8"
    assert header(response, b"content-length") == b"%d" % len(body)


def test_precompressed_has_own_etag_and_ranges(compressed: Path, files: StaticFiles) -> None:
    br = [(b"Accept-Encoding", b"br")]
    assert etag_of(files) != header(files.respond(request(b"/static/app.css", br)), b"etag")
    response = files.respond(request(b"/static/app.css", [*br, (b"Range", b"bytes=0-5")]))
    assert response.status == 206 and response.body == b"BROTLI"
    assert header(response, b"content-range") == b"bytes 0-5/12"


def test_vary_only_when_a_sibling_exists(compressed: Path, files: StaticFiles) -> None:
    gzip_only = files.respond(request(b"/static/only.js", [(b"Accept-Encoding", b"br")]))
    assert gzip_only.body == b"x" and header(gzip_only, b"vary") == b"Accept-Encoding"
    plain = files.respond(request(b"/static/big.bin", [(b"Accept-Encoding", b"br")]))
    assert header(plain, b"vary") is None and header(plain, b"content-encoding") is None


def test_sibling_leaving_the_root_is_ignored(root: Path, files: StaticFiles) -> None:
    os.symlink(root.parent / "secret.txt", root / "app.css.br")
    response = files.respond(request(b"/static/app.css", [(b"Accept-Encoding", b"br")]))
    assert response.body == CSS and header(response, b"content-encoding") is None


# --- mounts ----------------------------------------------------------------------------------


def test_finder_mount(tmp_path: Path) -> None:
    found = write(tmp_path / "app1" / "static" / "app1" / "site.css", CSS)
    asked: list[str] = []

    def finder(rel: str) -> Path | None:
        asked.append(rel)
        return found if rel == "app1/site css.css" else None

    files = StaticFiles([Mount("/static/", None, finder)])
    response = files.respond(request(b"/static/app1/site%20css.css"))
    assert response.status == 200 and response.body == CSS
    assert files.respond(request(b"/static/app1/other.css")).status == 404
    assert files.respond(request(b"/static/app1/../x.css")).status == 404
    assert asked == ["app1/site css.css", "app1/other.css"]


def test_root_first_then_finder(root: Path, tmp_path: Path) -> None:
    extra = write(tmp_path / "extra.css", b"from finder")
    files = StaticFiles([Mount("/static/", root, lambda rel: extra)])
    assert files.respond(request(b"/static/app.css")).body == CSS
    assert files.respond(request(b"/static/nope.css")).body == b"from finder"


def test_match_and_script_name(root: Path, tmp_path: Path) -> None:
    media = write(tmp_path / "media" / "m.txt", b"media").parent
    files = StaticFiles(
        [Mount("/static/", root), Mount("/static/media/", media)], script_name="/app"
    )
    assert files.match(b"/app/static/app.css")
    assert not files.match(b"/static/app.css")
    assert not files.match(b"/app/static")
    assert not files.match(b"/app/other/x")
    assert files.respond(request(b"/app/static/app.css")).body == CSS
    assert files.respond(request(b"/app/static/media/m.txt")).body == b"media"  # longest prefix
    assert files.respond(request(b"/static/app.css")).status == 404


def test_mount_prefix_must_be_a_directory_path(root: Path) -> None:
    with pytest.raises(ValueError):
        StaticFiles([Mount("/static", root)])


# --- FileProducer ----------------------------------------------------------------------------


def produce(data: bytes, offset: int, length: int, chunk_bytes: int = 64 * 1024):
    file = io.BytesIO(data)
    transport = StringTransport()
    producer = FileProducer(file, offset, length, chunk_bytes)
    done = producer.start(transport)
    results: list[object] = []
    done.addBoth(results.append)
    return file, transport, producer, results


def test_producer_sends_whole_file() -> None:
    file, transport, _, results = produce(BIG, 0, len(BIG), chunk_bytes=4096)
    assert transport.value() == BIG
    assert results == [None]
    assert file.closed and transport.producer is None


def test_producer_sends_a_range() -> None:
    file, transport, _, results = produce(BIG, 1000, 5000, chunk_bytes=1024)
    assert transport.value() == BIG[1000:6000]
    assert results == [None] and file.closed


def test_producer_from_a_real_file(root: Path) -> None:
    transport = StringTransport()
    with open(root / "big.bin", "rb") as file:
        results: list[object] = []
        FileProducer(file, 7, 70000).start(transport).addBoth(results.append)
        assert file.closed
    assert transport.value() == BIG[7:70007] and results == [None]


class PausingTransport(StringTransport):
    """A transport whose buffer is "full" after every write: it pauses its producer."""

    def write(self, data: bytes) -> None:
        super().write(data)
        self.producer.pauseProducing()


def test_producer_honours_pause_and_resume() -> None:
    file = io.BytesIO(BIG)
    transport = PausingTransport()
    producer = FileProducer(file, 0, 10_000, chunk_bytes=3000)
    results: list[object] = []
    producer.start(transport).addBoth(results.append)
    sizes = [len(transport.value())]
    for _ in range(10):
        if results:
            break
        producer.resumeProducing()
        sizes.append(len(transport.value()))
    assert sizes == [3000, 6000, 9000, 10_000]
    assert transport.value() == BIG[:10_000] and results == [None] and file.closed

    # Paused from outside: nothing is written until resumed.
    file = io.BytesIO(BIG)
    transport = StringTransport()
    producer = FileProducer(file, 0, 5000, chunk_bytes=1000)
    producer.pauseProducing()
    producer.start(transport).addBoth(results.append)
    assert transport.value() == b"" and not file.closed
    producer.resumeProducing()
    assert transport.value() == BIG[:5000] and file.closed


def test_producer_resumed_inside_write_does_not_recurse() -> None:
    class EagerTransport(StringTransport):
        def write(self, data: bytes) -> None:
            super().write(data)
            self.producer.pauseProducing()
            self.producer.resumeProducing()  # a consumer that drains synchronously

    transport = EagerTransport()
    file = io.BytesIO(BIG)
    results: list[object] = []
    FileProducer(file, 0, len(BIG), chunk_bytes=10).start(transport).addBoth(results.append)
    assert transport.value() == BIG and results == [None]


def test_stop_producing_errbacks_and_closes() -> None:
    file = io.BytesIO(BIG)
    transport = PausingTransport()
    producer = FileProducer(file, 0, len(BIG), chunk_bytes=1000)
    failures: list[object] = []
    producer.start(transport).addErrback(failures.append)
    producer.stopProducing()
    assert file.closed and len(failures) == 1
    failures[0].trap(RequestCancelled)  # type: ignore[attr-defined]
    producer.resumeProducing()  # late resume after stop: nothing happens
    assert transport.value() == BIG[:1000]


def test_file_shorter_than_promised_errbacks() -> None:
    file = io.BytesIO(b"0123456789")
    transport = StringTransport()
    failures: list[object] = []
    FileProducer(file, 5, 100).start(transport).addErrback(failures.append)
    assert transport.value() == b"56789"
    assert file.closed and transport.producer is None
    failures[0].trap(OSError)  # type: ignore[attr-defined]


@implementer(IConsumer)
class CountingConsumer:
    """Counts bytes without keeping them; pauses its producer every ``pause_every`` bytes."""

    def __init__(self, pause_every: int) -> None:
        self.producer: FileProducer | None = None
        self.received = 0
        self.largest_write = 0
        self.pause_every = pause_every
        self.since_pause = 0
        self.pauses = 0

    def registerProducer(self, producer: FileProducer, streaming: bool) -> None:
        assert streaming
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.received += len(data)
        self.largest_write = max(self.largest_write, len(data))
        self.since_pause += len(data)
        if self.since_pause >= self.pause_every and self.producer is not None:
            self.since_pause = 0
            self.pauses += 1
            self.producer.pauseProducing()


def test_large_sparse_file_streams_in_bounded_chunks(tmp_path: Path) -> None:
    size = 256 * 1024 * 1024
    path = tmp_path / "sparse.bin"
    with open(path, "wb") as file:
        file.truncate(size)
    consumer = CountingConsumer(pause_every=16 * 1024 * 1024)
    results: list[object] = []
    with open(path, "rb") as file:
        producer = FileProducer(file, 0, size)
        producer.start(consumer).addBoth(results.append)
        for _ in range(size // consumer.pause_every + 2):  # bounded: one resume per pause
            if results:
                break
            assert consumer.received % consumer.pause_every == 0  # nothing written while paused
            producer.resumeProducing()
        assert file.closed
    assert results == [None]
    assert consumer.received == size
    assert consumer.largest_write <= 64 * 1024
    assert consumer.pauses == size // consumer.pause_every
    assert consumer.producer is None
