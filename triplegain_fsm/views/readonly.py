"""Open a store so that reading it can change nothing, not even the files beside it.

A store is in WAL mode. While its writer runs, `-wal` and `-shm` exist and a
`mode=ro` reader shares them (safe beside a running bot). When no writer has it
open there is no `-wal`, and a `mode=ro` reader would create both files and
leave them behind; such a quiet store is opened `immutable=1` instead, which
creates nothing. A reader that refreshes (status --watch) reopens every time,
so it notices a writer starting.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REQUIRED_TABLES = frozenset({"orders", "positions", "events"})


class NotAStore(Exception):
    """The file is not a triplegain store (or not SQLite at all)."""


def open_store(path: Path) -> sqlite3.Connection:
    """A read-only connection with `sqlite3.Row` rows; raises NotAStore for a foreign file."""
    quiet = not Path(f"{path}-wal").exists()
    uri = f"{path.absolute().as_uri()}?mode=ro" + ("&immutable=1" if quiet else "")
    conn = sqlite3.connect(uri, uri=True)
    conn.row_factory = sqlite3.Row
    try:
        found = table_names(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise NotAStore(f"{path}: not a triplegain store ({exc})") from None
    if not found >= REQUIRED_TABLES:
        conn.close()
        raise NotAStore(f"{path}: not a triplegain store (no orders/positions/events tables)")
    return conn


def table_names(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    return [dict(row) for row in conn.execute(sql, params)]
