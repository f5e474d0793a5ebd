"""Static files served from the reactor: safe paths, a cache of what they resolve to, files.

Reactor layer: respond() runs on the reactor thread per request. The HTTP rules
(preconditions, ranges, codings, media types) are pure and live in http/conditional.py;
http/file_producer.py streams the files. This module resolves paths under mounts, stats and
caches files; it never opens a file per request once cached, never uses threads or wsgi/*.
POSIX paths.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from urllib.parse import quote, unquote_to_bytes

from treadle.http import conditional
from treadle.http.events import RequestHead

# Files up to this size are kept in memory and sent as the response body (no open/read per
# request); 64 KiB is one producer chunk, so larger files gain nothing from inlining.
INLINE_MAX_BYTES = 64 * 1024
CACHE_MAX_ENTRIES = 4096  # resolved paths kept; FIFO eviction bounds memory under path floods
CACHE_MAX_BODY_BYTES = 32 * 1024 * 1024  # total of inlined bodies
# whitenoise's defaults: a year for names carrying a content hash, a minute for the rest.
IMMUTABLE_CACHE = b"max-age=31536000, public, immutable"
DEFAULT_CACHE = b"public, max-age=60"
_ENCODINGS = ((b"br", ".br"), (b"gzip", ".gz"))  # preference order


@dataclass(frozen=True, slots=True)
class Mount:
    url_prefix: str  # "/static/" (always ends with "/")
    root: Path | None  # directory served, or None when only finders are used
    finder: Callable[[str], Path | None] | None = None  # relative path -> file or None
    # A missing file goes on to the app instead of a bare 404 (Django's DEBUG page, as
    # runserver's static handler does).
    pass_misses: bool = False
    # Names whose content never changes (a hash in the name: Django's collectstatic):
    # cached for a year as immutable; other files for a minute.
    immutable: Callable[[str], bool] | None = None


@dataclass(slots=True)
class StaticResponse:
    status: int
    headers: list[tuple[bytes, bytes]]  # complete; the protocol adds Date/Server/Connection
    path: Path | None  # file to send, or None (body below)
    offset: int
    length: int  # bytes of the file to send (0 for HEAD/304 and when body is used)
    body: bytes = b""


@dataclass(slots=True)
class _Variant:
    """One representation of a file (identity, br or gzip), validated and ready to send."""

    path: Path
    path_str: str
    identity: tuple[int, int, int, int]  # st_size, st_mtime_ns, st_ino, st_dev
    size: int
    mtime_s: int
    etag: bytes
    headers: list[tuple[bytes, bytes]]  # 200 headers without Content-Length
    headers_304: list[tuple[bytes, bytes]]  # RFC 9110 §15.4.5: validators and caching only
    body: bytes | None  # whole file when inlined


@dataclass(slots=True)
class _Entry:
    variants: dict[bytes, _Variant]  # b"" (identity), b"br", b"gzip"
    body_bytes: int


def _text_response(
    status: int, text: bytes, extra: Sequence[tuple[bytes, bytes]] = ()
) -> StaticResponse:
    headers = [
        (b"Content-Type", b"text/plain; charset=utf-8"),
        (b"Content-Length", b"%d" % len(text)),
        *extra,
    ]
    return StaticResponse(status, headers, None, 0, 0, text)


def _not_found() -> StaticResponse:
    return _text_response(404, b"Not Found\n")


def relative_path(raw: bytes) -> str | None:
    """The percent-encoded path below a mount as a safe relative path, or None (-> 404).

    Each segment is decoded on its own, so an encoded "/" or "\\" cannot create a segment;
    "." and "..", empty segments (leading "/", "//", a trailing "/"), NUL and invalid UTF-8
    are refused rather than normalised.
    """
    if not raw:
        return None
    parts = []
    for segment in raw.split(b"/"):
        if b"%" in segment:
            segment = unquote_to_bytes(segment)
        if (
            not segment
            or segment == b".."
            or segment == b"."
            or b"/" in segment
            or b"\\" in segment
            or b"\x00" in segment
        ):
            return None
        try:
            parts.append(segment.decode("utf-8"))
        except UnicodeDecodeError:
            return None
    return "/".join(parts)


class StaticFiles:
    """Resolves requests under the mounts to files, caching what it resolved (reactor thread)."""

    def __init__(
        self,
        mounts: Sequence[Mount],
        *,
        script_name: str = "",
        inline_max_bytes: int = INLINE_MAX_BYTES,
    ) -> None:
        base = script_name.rstrip("/")
        mounted: list[tuple[bytes, Mount, str | None]] = []
        for mount in mounts:
            if not mount.url_prefix.startswith("/") or not mount.url_prefix.endswith("/"):
                raise ValueError(f"mount prefix must start and end with '/': {mount.url_prefix!r}")
            prefix = quote(base + mount.url_prefix, safe="/:@!$&'()*+,;=-._~").encode("ascii")
            root = os.path.realpath(mount.root) if mount.root is not None else None
            mounted.append((prefix, mount, root))
        mounted.sort(key=lambda item: len(item[0]), reverse=True)  # longest prefix wins
        self._mounts = mounted
        self._prefixes = tuple(prefix for prefix, _, _ in mounted)
        self._inline_max_bytes = inline_max_bytes
        self._cache: dict[bytes, _Entry] = {}
        self._cache_body_bytes = 0
        self._codings: dict[bytes, tuple[bool, bool]] = {}

    def match(self, raw_path: bytes) -> bool:
        """Is this (percent-encoded) request path under a mount? Called for every request."""
        return raw_path.startswith(self._prefixes)

    def respond(self, head: RequestHead) -> StaticResponse | None:
        """The complete response for a request that match() accepted; None when the file is
        missing under a mount that passes misses on to the app."""
        return self._respond(head, retry=True)

    def _respond(self, head: RequestHead, *, retry: bool) -> StaticResponse | None:
        method = head.method
        if method != b"GET" and method != b"HEAD":
            return _text_response(405, b"Method Not Allowed\n", [(b"Allow", b"GET, HEAD")])
        fields: dict[bytes, bytes] = {}
        for name, value in head.headers:
            name = name.lower()
            if name in conditional.FIELDS:
                seen = fields.get(name)
                fields[name] = value if seen is None else seen + b"," + value
        raw_path = head.path
        entry = self._cache.get(raw_path)
        if entry is None:
            entry = self._load(raw_path)
            if entry is None:
                return None if self._passes_misses(raw_path) else _not_found()
        variant = entry.variants[b""]
        if len(entry.variants) > 1:
            accept = fields.get(b"accept-encoding")
            if accept is not None:
                variant = self._pick_variant(entry, accept)
        try:
            st = os.stat(variant.path_str)
        except OSError:
            st = None
        if st is None or variant.identity != (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev):
            self._forget(raw_path)  # changed on disk: resolve again from scratch, once
            return self._respond(head, retry=False) if retry else _not_found()
        return self._conditional_response(head, fields, variant)

    def _pick_variant(self, entry: _Entry, accept: bytes) -> _Variant:
        codings = self._codings.get(accept)
        if codings is None:
            if len(self._codings) >= 256:
                self._codings.clear()
            codings = self._codings[accept] = conditional.accepted_codings(accept)
        variants = entry.variants
        if codings[0] and b"br" in variants:
            return variants[b"br"]
        if codings[1] and b"gzip" in variants:
            return variants[b"gzip"]
        return variants[b""]

    def _conditional_response(
        self, head: RequestHead, fields: dict[bytes, bytes], variant: _Variant
    ) -> StaticResponse:
        status, span = conditional.evaluate(
            head.method, fields, variant.etag, variant.mtime_s, variant.size
        )
        if status == 412:
            return _text_response(412, b"Precondition Failed\n")
        if status == 304:
            return StaticResponse(304, variant.headers_304.copy(), None, 0, 0)
        if status == 416:
            # RFC 9110 §15.5.17: 416 names the current length.
            return _text_response(
                416,
                b"Range Not Satisfiable\n",
                [(b"Content-Range", b"bytes */%d" % variant.size)],
            )
        if span is not None:
            return self._partial(variant, span)
        headers = variant.headers.copy()
        headers.append((b"Content-Length", b"%d" % variant.size))
        if head.method == b"HEAD":
            return StaticResponse(200, headers, None, 0, 0)
        if variant.body is not None:
            return StaticResponse(200, headers, None, 0, 0, variant.body)
        return StaticResponse(200, headers, variant.path, 0, variant.size)

    @staticmethod
    def _partial(variant: _Variant, span: tuple[int, int]) -> StaticResponse:
        offset, length = span
        size = variant.size
        headers = variant.headers.copy()
        headers.append((b"Content-Range", b"bytes %d-%d/%d" % (offset, offset + length - 1, size)))
        headers.append((b"Content-Length", b"%d" % length))
        if variant.body is not None:
            return StaticResponse(206, headers, None, 0, 0, variant.body[offset : offset + length])
        return StaticResponse(206, headers, variant.path, offset, length)

    def _passes_misses(self, raw_path: bytes) -> bool:
        mount = next((m for prefix, m, _ in self._mounts if raw_path.startswith(prefix)), None)
        return mount is not None and mount.pass_misses

    def _forget(self, raw_path: bytes) -> None:
        entry = self._cache.pop(raw_path, None)
        if entry is not None:
            self._cache_body_bytes -= entry.body_bytes

    def _load(self, raw_path: bytes) -> _Entry | None:
        """Resolve a path not in the cache; cache it when it is a servable file."""
        mounted = next((item for item in self._mounts if raw_path.startswith(item[0])), None)
        if mounted is None:
            return None
        prefix, mount, root = mounted
        rel = relative_path(raw_path[len(prefix) :])
        if rel is None:
            return None
        entry = None
        if root is not None:
            entry = self._build_entry(os.path.join(root, rel), root, rel, mount)
        if entry is None and mount.finder is not None:
            located = mount.finder(rel)  # Django's finders check their own roots
            if located is not None:
                entry = self._build_entry(os.fspath(located), None, rel, mount)
        if entry is not None:
            if len(self._cache) >= CACHE_MAX_ENTRIES:
                self._forget(next(iter(self._cache)))
            self._cache[raw_path] = entry
            self._cache_body_bytes += entry.body_bytes
        return entry

    @staticmethod
    def _under_root(root: str, path: str) -> bool:
        """Does ``path`` stay inside ``root`` once symlinks are followed?"""
        return os.path.realpath(path).startswith(root + os.sep) or root == os.sep

    def _build_entry(self, found: str, root: str | None, rel: str, mount: Mount) -> _Entry | None:
        content_type = conditional.content_type(rel)
        hashed = mount.immutable is not None and mount.immutable(rel.rpartition("/")[2])
        cache_control = IMMUTABLE_CACHE if hashed else DEFAULT_CACHE
        stats: dict[bytes, tuple[str, os.stat_result]] = {}
        for encoding, suffix in ((b"", ""), *_ENCODINGS):
            path = found + suffix
            if root is not None and not self._under_root(root, path):
                continue
            try:
                st = os.stat(path)
            except (OSError, ValueError):
                continue
            if stat.S_ISREG(st.st_mode):
                stats[encoding] = (path, st)
            elif not suffix:
                return None  # directories and devices are never served
        if b"" not in stats:
            return None
        base = [(b"Content-Type", content_type), (b"Cache-Control", cache_control)]
        vary = [(b"Vary", b"Accept-Encoding")] if len(stats) > 1 else []
        variants: dict[bytes, _Variant] = {}
        body_bytes = 0
        for encoding, (path, st) in stats.items():
            body = None
            if (
                st.st_size <= self._inline_max_bytes
                and self._cache_body_bytes + body_bytes + st.st_size <= CACHE_MAX_BODY_BYTES
            ):
                body = self._read_whole(path, st)
                body_bytes += 0 if body is None else len(body)
            mtime_s = st.st_mtime_ns // 1_000_000_000
            tag_suffix = b"-" + encoding if encoding else b""
            etag = b'"%x-%x%s"' % (st.st_mtime_ns, st.st_size, tag_suffix)
            validators = [(b"ETag", etag)]
            coding = [(b"Content-Encoding", encoding)] if encoding else []
            headers = [
                *base,
                *validators,
                (b"Last-Modified", formatdate(mtime_s, usegmt=True).encode("ascii")),
                (b"Accept-Ranges", b"bytes"),
                *coding,
                *vary,
            ]
            variants[encoding] = _Variant(
                path=Path(path),
                path_str=path,
                identity=(st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev),
                size=st.st_size,
                mtime_s=mtime_s,
                etag=etag,
                headers=headers,
                headers_304=[(b"Cache-Control", cache_control), *validators, *vary],
                body=body,
            )
        return _Entry(variants, body_bytes)

    @staticmethod
    def _read_whole(path: str, st: os.stat_result) -> bytes | None:
        """The file's bytes if it still has the size we stat'ed (else stream it instead)."""
        try:
            with open(path, "rb") as file:
                data = file.read(st.st_size + 1)
        except OSError:
            return None
        return data if len(data) == st.st_size else None
