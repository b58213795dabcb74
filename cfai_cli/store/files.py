"""Uploaded and generated files (`/v1/files`): bytes in a BlobStore (`<data dir>/files/`, or `files/` in the
`[blobs]` bucket), metadata in the store's database (store.sql: the SQLite file, or PostgreSQL).

Imports stdlib, anyio, store.sql and store.blobs. Each file is one object named by its unguessable id (on disk a
0600 file in a 0700 directory); the row says who owns it (the uploading key's id; NULL for the CLI or a server
without auth) and every read is by id *and* owner, so another key's file is simply not found. Rows are listed
newest first by insertion order (the rowid; an identity column on PostgreSQL), which is also the `after` cursor's
order: unique and never changed, so paging neither repeats nor skips a file that existed when it began. (On
PostgreSQL identities are handed out at insert, not at commit: a file committed while a client pages may land
behind its cursor and show only in the next listing, as a file uploaded mid-listing may on SQLite too.) The object
is written before its row and deleted before it (as store.images): a row never names bytes that are not there, and
an object whose delete failed is still indexed, so it can be deleted again.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import anyio

from cfai_cli.errors import BlobsUnavailable
from cfai_cli.store.blobs import Blob, BlobStore, DiskBlobs
from cfai_cli.store.sql import Database, Tx, open_database

# NULL (the CLI, a server without auth) matches NULL; store.sql spells it IS NOT DISTINCT FROM for PostgreSQL.
OWNED = "owner IS ?"


def owned_by(owner: str | None) -> tuple[str, list[object]]:
    """OWNED for a scan by owner (a list, a quota's count): `owner = ?` / `owner IS NULL`, which PostgreSQL's
    owner index serves (not IS NOT DISTINCT FROM); lookups by id have the primary key anyway."""
    return ("owner IS NULL", []) if owner is None else ("owner = ?", [owner])


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
    def __init__(self, target: Path | str | Database, directory: Path, blobs: BlobStore | None = None) -> None:
        self.db = open_database(target)
        self.directory = directory  # scratch files; the bytes too unless `blobs` puts them elsewhere
        self.blobs = blobs if blobs is not None else DiskBlobs(directory)

    def _db(self, *, write: bool = False, lock: str | None = None) -> AbstractContextManager[Tx]:
        # Single-statement writes need no turn across replicas; a quota's count-then-insert takes its owner's.
        return self.db.transaction(write=write, lock=lock)

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

    async def add(self, record: StoredFile, scratch: Path, *, quota: tuple[int, int] | None = None) -> StoredFile:
        """Store a written scratch file's bytes under the record's id (on disk: a rename), then its row. `quota`
        (files, bytes) bounds what the owner's uploads may hold together, judged in the same write transaction
        as the insert (exact under concurrency): a FileQuotaExceeded leaves nothing stored."""
        if not record.id.replace("-", "").replace("_", "").isalnum():  # ids are ours; this only guards a bug
            raise ValueError(f"not a file id: {record.id!r}")
        await self.blobs.put(record.id, scratch, content_type="application/octet-stream", move=True)
        try:
            await anyio.to_thread.run_sync(self._insert, record, quota)
        except BaseException:
            with anyio.CancelScope(shield=True), contextlib.suppress(BlobsUnavailable):
                await self.blobs.delete(record.id)
            raise
        return record

    def _insert(self, record: StoredFile, quota: tuple[int, int] | None) -> None:
        # The owner's turn (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL) spans the count and the
        # insert: two uploads at once cannot both see room for one more.
        with self._db(write=True, lock=None if quota is None else f"files:{record.owner}") as conn:
            if quota is not None:
                mine, args = owned_by(record.owner)
                count, held = conn.execute(
                    f"SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM files WHERE {mine} AND purpose IN "
                    "('batch', 'user_data')", args).fetchone()
                if count + 1 > quota[0] or held + record.bytes > quota[1]:
                    raise FileQuotaExceeded(count, int(held), quota)
            conn.execute(f"INSERT INTO files ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (record.id, record.owner, record.purpose, record.filename, record.bytes,
                          record.created_at, record.expires_at, record.lines))

    def get(self, file_id: str, *, owner: str | None) -> StoredFile | None:
        with self._db() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM files WHERE id = ? AND {OWNED}", (file_id, owner)).fetchone()
        return None if row is None else _file(row)

    def page(self, *, owner: str | None, purpose: str | None, limit: int, after: str | None,
             ascending: bool) -> tuple[list[StoredFile], bool]:
        """A page of the owner's files and whether more follow."""
        where, args = owned_by(owner)
        if purpose is not None:
            where += " AND purpose = ?"
            args.append(purpose)
        with self._db() as conn:
            if after is not None:
                found = conn.execute(f"SELECT rowid FROM files WHERE id = ? AND {OWNED}", (after, owner)).fetchone()
                if found is not None:
                    where += " AND rowid > ?" if ascending else " AND rowid < ?"
                    args.append(found[0])
            rows = conn.execute(f"SELECT {_COLUMNS} FROM files WHERE {where} ORDER BY rowid "
                                f"{'ASC' if ascending else 'DESC'} LIMIT ?", (*args, limit + 1)).fetchall()
        return [_file(r) for r in rows[:limit]], len(rows) > limit

    async def open(self, found: StoredFile) -> Blob | None:
        """A file's bytes (None: the object is gone although its row is not)."""
        return await self.blobs.get(found.id)

    async def delete(self, file_id: str, *, owner: str | None) -> bool:
        """The owner's file: the object (one already gone is no error), then the row; False if there is none."""
        if await anyio.to_thread.run_sync(lambda: self.get(file_id, owner=owner)) is None:
            return False
        await self.blobs.delete(file_id)
        return await anyio.to_thread.run_sync(self._delete_row, file_id, owner)

    def _delete_row(self, file_id: str, owner: str | None) -> bool:
        with self._db(write=True) as conn:
            return bool(conn.execute(f"DELETE FROM files WHERE id = ? AND {OWNED}", (file_id, owner)).rowcount > 0)
