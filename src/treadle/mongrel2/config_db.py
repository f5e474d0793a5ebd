"""Read a handler's sockets from Mongrel2's own configuration database (config.sqlite).

Composition layer: opens the file read-only with the standard library's sqlite3 and
never writes it. The tables are those of Mongrel2's src/config/config.sql (``handler``,
``route``, ``setting``); ``m2sh load`` fills them from a .conf file.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from treadle.errors import ConfigError


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    send_spec: str
    recv_spec: str
    upload_store: str | None  # the upload.temp_store setting, e.g. /var/up/m2.XXXXXX


def read_handler(database: str, name: str) -> HandlerSpec:
    """The handler whose id is ``name``, or whose send_ident is, or that a route of that
    path targets. ConfigError if the file or the handler is not there, or is ambiguous."""
    if not Path(database).is_file():
        raise ConfigError(f"--from-config: no such file: {database}")
    try:
        db = sqlite3.connect(f"file:{Path(database).resolve()}?mode=ro", uri=True)
    except sqlite3.Error as error:
        raise ConfigError(f"--from-config {database}: {error}") from None
    try:
        rows = _find(db, name)
        if not rows:
            raise ConfigError(
                f"--handler {name!r}: no handler with that id, send_ident or route in {database}"
            )
        if len({row[0] for row in rows}) > 1:
            ids = ", ".join(str(row[0]) for row in rows)
            raise ConfigError(f"--handler {name!r} matches handlers {ids}: give the id")
        _, send_spec, recv_spec = rows[0]
        store = db.execute("SELECT value FROM setting WHERE key = 'upload.temp_store'").fetchone()
    except sqlite3.Error as error:
        raise ConfigError(f"--from-config {database}: not a Mongrel2 config ({error})") from None
    finally:
        db.close()
    return HandlerSpec(str(send_spec), str(recv_spec), store[0] if store else None)


def _find(db: sqlite3.Connection, name: str) -> list[tuple[int, str, str]]:
    query = "SELECT DISTINCT h.id, h.send_spec, h.recv_spec FROM handler h"
    if name.isdigit():
        return db.execute(query + " WHERE h.id = ?", (int(name),)).fetchall()
    found = db.execute(query + " WHERE h.send_ident = ?", (name,)).fetchall()
    if found:
        return found
    return db.execute(
        query + " JOIN route r ON r.target_id = h.id AND r.target_type = 'handler'"
        " WHERE r.path = ?",
        (name,),
    ).fetchall()
