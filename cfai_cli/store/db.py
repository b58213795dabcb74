"""One way to open the embedded SQLite database: created 0600 in a 0700 directory, WAL, schema applied once.

Imports stdlib and errors. Several processes (uvicorn workers, the CLI) share the file; WAL lets readers
run beside the one writer, and the busy timeout makes writers wait their turn instead of failing.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Literal

from cfai_cli.errors import ConfigError

_READY: set[tuple[Path, str]] = set()
_SETUP = threading.Lock()  # threads of one process (a request, the retention pass) set a schema up once


@contextmanager
def connect(path: Path, schema: str, *, immediate: bool = False,
            migrate: Callable[[sqlite3.Connection], None] | None = None,
            wait: float = 30.0, synchronous: Literal["FULL", "NORMAL"] = "FULL") -> Iterator[sqlite3.Connection]:
    """A connection inside one transaction (committed on success); `immediate` takes the write lock first.

    The schema (and `migrate`, for tables an older cfai made) runs once per process and file. `wait`: seconds
    a locked file is waited for before the error. `synchronous`: SQLite's default FULL syncs the WAL at each
    commit; NORMAL syncs it only before a checkpoint (the last connection's close runs one), which in WAL mode
    can lose the latest commits to a power cut but never corrupts the file (sqlite.org/pragma.html#pragma_synchronous).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        with closing(sqlite3.connect(path, timeout=wait, isolation_level=None)) as conn:
            conn.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
            if synchronous != "FULL":
                conn.execute(f"PRAGMA synchronous = {synchronous}")
            if (path, schema) not in _READY:
                with _SETUP:
                    if (path, schema) not in _READY:
                        conn.execute("PRAGMA journal_mode = WAL")
                        conn.executescript(schema)
                        if migrate is not None:
                            migrate(conn)
                        _READY.add((path, schema))
            conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise ConfigError(f"Cannot use the database {path}: {exc}") from None


def add_columns(conn: sqlite3.Connection, table: str, columns: dict[str, str]) -> None:
    """Add columns a newer cfai needs to a table an older one created (nothing the user stored is lost)."""
    have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    for name, kind in columns.items():
        if name not in have:
            try:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
            except sqlite3.OperationalError as exc:  # another process added it in the meantime
                if "duplicate column" not in str(exc):
                    raise
