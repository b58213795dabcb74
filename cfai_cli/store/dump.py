"""`cfai db export` / `cfai db import`: the shared tables as JSON lines, to move a gateway between engines.

Imports stdlib, errors and store.sql. One line a row, `{"table": name, "row": {column: value}}`, tables in a
fixed order and rows in insertion order (rowid), so an export of the same data is the same text on either
engine; bytes (cached bodies) as `{"base64": "..."}`. The PostgreSQL `rowid` columns are not exported: the
importing database numbers the rows again, in the same order. api_keys_epoch is not data (triggers count it).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from typing import Any

from cfai_cli.errors import ConfigError
from cfai_cli.store.sql import Database, Tx

# table -> its order; in an order that imports cleanly (nothing refers to a later table)
TABLES: dict[str, str] = {
    "api_keys": "created_at, id", "usage_log": "rowid", "responses": "rowid", "cli_state": "key",
    "response_cache": "rowid", "images": "rowid", "key_spend": "rowid", "model_cost": "model", "files": "rowid",
    "batches": "rowid", "batch_lines": "batch_id, line", "batch_jobs": "rowid", "account_spend": "day, account",
}
_CHUNK = 500  # rows per executemany on import


def _columns(tx: Tx, table: str) -> list[str]:
    cur: Any = tx.execute(f"SELECT * FROM {table} LIMIT 0")
    return [d[0] for d in cur.description if d[0] != "rowid"]


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        return base64.b64decode(value["base64"])
    return value


def export_lines(db: Database) -> Iterator[str]:
    """Every row of every shared table, one JSON line each (one read transaction: a consistent copy)."""
    with db.transaction() as tx:
        for table, order in TABLES.items():
            columns = _columns(tx, table)
            for row in tx.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}"):
                yield json.dumps({"table": table, "row": {c: _encode(v) for c, v in zip(columns, row, strict=True)}},
                                 ensure_ascii=False, separators=(",", ":"))


def row_count(db: Database) -> int:
    with db.transaction() as tx:
        return sum(int(tx.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]) for table in TABLES)


def import_lines(db: Database, lines: Iterable[str], *, force: bool = False) -> dict[str, int]:
    """Load an export into `db` in one transaction; a database that holds rows is refused unless `force`
    (then its rows are replaced). Returns rows imported per table."""
    counts = dict.fromkeys(TABLES, 0)
    with db.transaction(write=True, lock="db-import") as tx:
        held = sum(int(tx.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]) for table in TABLES)
        if held and not force:
            raise ConfigError(f"The database {db.label} already holds {held} rows; import only into an empty one, "
                              "or give --force to replace them.")
        if held:
            for table in reversed(TABLES):
                tx.execute(f"DELETE FROM {table}")
        known = {table: set(_columns(tx, table)) for table in TABLES}  # names from the file go into SQL text
        batch: list[tuple[Any, ...]] = []
        current: tuple[str, tuple[str, ...]] | None = None

        def flush() -> None:
            if current is not None and batch:
                table, columns = current
                tx.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                               batch)
            batch.clear()

        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                table, row = item["table"], item["row"]
                if table not in TABLES or not isinstance(row, dict):
                    raise ValueError(f"unknown table {table!r}")
                if not set(row) <= known[table]:
                    raise ValueError(f"{table} has no column {sorted(set(row) - known[table])[0]!r}")
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"Line {number} of the import is not an export line ({exc}).") from None
            key = (table, tuple(row))
            if key != current or len(batch) >= _CHUNK:
                flush()
                current = key
            batch.append(tuple(_decode(v) for v in row.values()))
            counts[table] += 1
        flush()
    return counts
