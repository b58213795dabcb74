"""Uploaded and generated files (`/v1/files`): bytes under `<data dir>/files/`, metadata in the cfai database.

Imports stdlib and store.db. Each file is one 0600 file named by its unguessable id in a 0700 directory; the
row says who owns it (the uploading key's id; NULL for the CLI or a server without auth) and every read is
by id *and* owner, so another key's file is simply not found. Rows are listed newest first by insertion
order (the rowid), which is also the `after` cursor's order.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from cfai_cli.store.db import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY,
    owner TEXT,
    purpose TEXT NOT NULL,
    filename TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    lines INTEGER
);
CREATE INDEX IF NOT EXISTS files_owner ON files (owner, purpose);
"""


class FileQuotaExceeded(Exception):
    """An owner's uploads would hold more files or bytes than its quota allows."""

    def __init__(self, count: int, held: int, quota: tuple[int, int]) -> None:
        super().__init__(f"{count} files, {held} bytes stored; quota {quota[0]} files, {quota[1]} bytes")
        self.count, self.held, self.quota = count, held, quota


@dataclass(frozen=True, slots=True)
class StoredFile:
    id: str
    owner: str | None
    purpose: str
    filename: str
    bytes: int
    created_at: int
    expires_at: int | None
    lines: int | None  # requests in a batch input file (checked on upload)


_COLUMNS = "id, owner, purpose, filename, bytes, created_at, expires_at, lines"


def _file(row: tuple[object, ...]) -> StoredFile:
    return StoredFile(*row)  # type: ignore[arg-type]


class FileStore:
    def __init__(self, database: Path, directory: Path) -> None:
        self.database = database
        self.directory = directory

    def _db(self) -> AbstractContextManager[sqlite3.Connection]:
        return connect(self.database, SCHEMA, immediate=True)

    def path_of(self, file_id: str) -> Path:
        if not file_id.replace("-", "").replace("_", "").isalnum():  # never a path outside the directory
            raise ValueError(f"not a file id: {file_id!r}")
        return self.directory / file_id

    def scratch(self, name: str) -> Path:
        """A private path in the files directory to write an upload to before it is `add`ed (same disk: a rename)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.directory / f".{name}.part"

    @contextlib.contextmanager
    def writer(self, name: str) -> Iterator[tuple[Path, int]]:
        """(scratch path, an fd open on it, created 0600); the scratch file is removed unless it was `add`ed."""
        path = self.scratch(name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            yield path, fd
        finally:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def add(self, record: StoredFile, scratch: Path, *, quota: tuple[int, int] | None = None) -> StoredFile:
        """Move a written scratch file to its id and record it. `quota` (files, bytes) bounds what the owner's
        uploads may hold together, judged in the same write transaction as the insert (exact under concurrency):
        a FileQuotaExceeded leaves nothing stored."""
        with self._db() as conn:
            if quota is not None:
                count, held = conn.execute(
                    "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM files WHERE owner IS ? AND purpose IN "
                    "('batch', 'user_data')", (record.owner,)).fetchone()
                if count + 1 > quota[0] or held + record.bytes > quota[1]:
                    raise FileQuotaExceeded(count, int(held), quota)
            os.replace(scratch, self.path_of(record.id))
            conn.execute(f"INSERT INTO files ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (record.id, record.owner, record.purpose, record.filename, record.bytes,
                          record.created_at, record.expires_at, record.lines))
        return record

    def get(self, file_id: str, *, owner: str | None) -> StoredFile | None:
        with self._db() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM files WHERE id = ? AND owner IS ?", (file_id, owner)).fetchone()
        return None if row is None else _file(row)

    def page(self, *, owner: str | None, purpose: str | None, limit: int, after: str | None,
             ascending: bool) -> tuple[list[StoredFile], bool]:
        """A page of the owner's files and whether more follow."""
        where, args = "owner IS ?", [owner]
        if purpose is not None:
            where += " AND purpose = ?"
            args.append(purpose)
        with self._db() as conn:
            if after is not None:
                found = conn.execute("SELECT rowid FROM files WHERE id = ? AND owner IS ?", (after, owner)).fetchone()
                if found is not None:
                    where += " AND rowid > ?" if ascending else " AND rowid < ?"
                    args.append(found[0])
            rows = conn.execute(f"SELECT {_COLUMNS} FROM files WHERE {where} ORDER BY rowid "
                                f"{'ASC' if ascending else 'DESC'} LIMIT ?", (*args, limit + 1)).fetchall()
        return [_file(r) for r in rows[:limit]], len(rows) > limit

    def delete(self, file_id: str, *, owner: str | None) -> bool:
        with self._db() as conn:
            gone = conn.execute("DELETE FROM files WHERE id = ? AND owner IS ?", (file_id, owner)).rowcount > 0
        if gone:
            with contextlib.suppress(FileNotFoundError):
                self.path_of(file_id).unlink()
        return gone
