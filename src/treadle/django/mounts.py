"""Django's STATIC_URL and MEDIA_URL -> treadle static mounts served from the reactor.

Composition layer (Django integration), called once before the server starts. With
DEBUG (or --insecure) static files come from the staticfiles finders, as runserver's;
otherwise from STATIC_ROOT (what collectstatic wrote, hashed names included). It never
serves a URL Django places on another host (``https://cdn.example/``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation

from treadle.django import internals
from treadle.static import Mount

log = logging.getLogger("treadle")

# ManifestStaticFilesStorage's names: "name.<12 hex digits of the content's MD5>.ext".
_HASHED_NAME = re.compile(r"\.[0-9a-f]{12}\.[^./]+$")


def is_hashed_name(name: str) -> bool:
    """Does a file name carry collectstatic's content hash (so its content never changes)?

    Called in the reactor thread, once per file resolved.
    """
    return _HASHED_NAME.search(name) is not None


def local_url(name: str, script_name: str) -> str | None:
    """The path below ``script_name`` where Django's ``name`` URL (STATIC_URL...) points, or None.

    Django prefixes a relative STATIC_URL with the script prefix of the thread that reads it
    first, and caches that. We resolve it here with the script name every request carries
    and store the absolute result, so every app thread renders the same links. An absolute
    path outside the script name could not reach this server; it is moved under it.
    """
    raw = internals.raw_setting(settings, name)  # before LazySettings adds a script prefix
    if not raw:
        return None
    raw = str(raw)
    if raw.startswith(("http://", "https://", "//")):
        return None  # another host serves them
    path = raw if raw.startswith("/") else f"{script_name}/{raw}"
    if not path.endswith("/"):
        path += "/"
    if script_name and not path.startswith(script_name + "/"):
        log.warning(
            "%s %s is outside --script-name %s: serving it at %s%s",
            name,
            raw,
            script_name,
            script_name,
            path,
        )
        path = script_name + path
    if path != raw:
        setattr(settings, name, path)
    return path[len(script_name) :]


def _static_finder() -> Callable[[str], Path | None]:
    from django.contrib.staticfiles import finders

    def find(relative: str) -> Path | None:
        """Called in the reactor thread for a path not yet cached."""
        try:
            found = finders.find(relative)
        except (SuspiciousFileOperation, ValueError, OSError):
            return None
        return Path(found) if isinstance(found, str) else None

    return find


def django_mounts(
    *, script_name: str, serve_static: bool, insecure: bool, serve_media: bool
) -> list[Mount]:
    """The mounts for this project's settings and the command's --nostatic/--insecure/--media."""
    mounts: list[Mount] = []
    if serve_static:
        prefix = local_url("STATIC_URL", script_name)
        root = Path(settings.STATIC_ROOT) if getattr(settings, "STATIC_ROOT", None) else None
        has_finders = apps.is_installed("django.contrib.staticfiles")
        if prefix is None or prefix == "/":
            # "/" would hide the whole app behind the static mount (Django's static() refuses it).
            log.info("STATIC_URL is not a local prefix: not serving static files")
        elif settings.DEBUG and has_finders:
            # As runserver: the app's own files, fresh from the finders (never stale copies),
            # and a missing one gets Django's debug 404 page, not a bare one.
            mounts.append(
                Mount(prefix, None, _static_finder(), pass_misses=True, immutable=is_hashed_name)
            )
        elif insecure and has_finders:
            # Collected (hashed) names first, then whatever the finders know.
            mounts.append(Mount(prefix, root, _static_finder(), immutable=is_hashed_name))
        elif root is not None:
            if not root.is_dir():
                log.warning("STATIC_ROOT %s does not exist: run manage.py collectstatic", root)
            mounts.append(Mount(prefix, root, immutable=is_hashed_name))
        else:
            log.warning("STATIC_ROOT is not set: not serving static files at %s", prefix)
    if serve_media:
        prefix = local_url("MEDIA_URL", script_name)
        media_root = getattr(settings, "MEDIA_ROOT", None)
        if prefix is None or prefix == "/" or not media_root:
            log.warning("--media needs MEDIA_ROOT and a local MEDIA_URL: not serving media")
        else:
            mounts.append(Mount(prefix, Path(media_root)))
    return mounts
