"""--user, --group and --umask: who the server runs as once its sockets are bound.

Composition layer, used by ``treadle serve`` in the main thread of the one process or
the supervisor, after binding (ports below 1024 need root) and before the app is
imported or a worker spawned (the app never runs as root). Plain os/pwd/grp calls, no
reactor. It never changes anything when none of the three settings is given.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd

from treadle.errors import ConfigError

log = logging.getLogger("treadle")


def resolve(user: str | None, group: str | None) -> tuple[int, int] | None:
    """(uid, gid) to switch to, or None when neither is given. Names or numbers."""
    if user is None and group is None:
        return None
    uid, gid = os.getuid(), os.getgid()
    if user is not None:
        try:
            entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        except (KeyError, OverflowError):
            if not user.isdigit():
                raise ConfigError(f"--user {user}: no such user") from None
            uid = int(user)  # a bare uid with no passwd entry (containers): its own gid
        else:
            uid, gid = entry.pw_uid, entry.pw_gid
    if group is not None:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise ConfigError(f"--group {group}: no such group") from None
    return uid, gid


def set_umask(umask: int | None) -> None:
    if umask is not None:
        os.umask(umask)


def socket_mode(umask: int | None) -> int:
    """A unix socket bound without mode=: 0666 (Twisted's default) less the umask."""
    return 0o666 if umask is None else 0o666 & ~umask


def drop(user: str | None, group: str | None) -> None:
    """Become ``user``/``group`` for good (supplementary groups too). Raises ConfigError."""
    wanted = resolve(user, group)
    if wanted is None:
        return
    uid, gid = wanted
    if (os.getuid(), os.getgid()) == (uid, gid) and os.geteuid() == uid:
        return
    if os.geteuid() != 0:
        raise ConfigError(f"--user/--group: switching to uid {uid} gid {gid} needs root")
    os.setgroups([gid])
    os.setgid(gid)  # group first: once the uid is dropped we may no longer change it
    os.setuid(uid)
    log.info("running as uid %d, gid %d", uid, gid)
