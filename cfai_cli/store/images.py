"""Generated images kept for `response_format: "url"`: bytes in a BlobStore (the data dir, or S3 with
`[blobs]`), indexed in SQLite with a TTL.

Imports stdlib, store.db and store.blobs. Ids are 32 url-safe random characters (192 bits), so a URL is as good
as a signed link; lookups go through the index, never through a path or key built from user input. The object
is written before its row (a row never names bytes that are not there) and deleted before its row (an object
whose delete failed is still indexed, and goes at the next purge) — so any replica sharing the bucket and the
database serves, and expires, what another made.
"""

from __future__ import annotations

import re
import secrets
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from cfai_cli.store.blobs import Blob, BlobStore
from cfai_cli.store.sql import Database, Tx, open_database

_NAME = re.compile(r"^([A-Za-z0-9_-]{32})\.(png|jpeg|webp)$")


@dataclass(frozen=True, slots=True)
class StoredImage:
    blob: Blob
    content_type: str
    expires_at: int


class ImageStore:
    def __init__(self, database: Path | str | Database, blobs: BlobStore, *, ttl_seconds: float) -> None:
        self.db = open_database(database)
        self.blobs = blobs
        self.ttl = ttl_seconds

    def _connect(self) -> AbstractContextManager[Tx]:
        return self.db.transaction(write=True, lock=None)  # one-row statements: nothing to serialise

    async def save(self, data: bytes, image_format: str, *, now: float | None = None) -> str:
        """Store the image; returns its file name (`<id>.<format>`). Expired images are removed on the way.
        Raises BlobsUnavailable (503) when the bytes cannot be kept: never a URL that would 404."""
        now = time.time() if now is None else now
        await self.purge(now=now)
        image_id = secrets.token_urlsafe(24)
        name = f"{image_id}.{image_format}"
        await self.blobs.put(name, data, content_type=f"image/{image_format}")
        with self._connect() as conn:
            conn.execute("INSERT INTO images (id, format, created_at, expires_at) VALUES (?, ?, ?, ?)",
                         (image_id, image_format, int(now), int(now + self.ttl)))
        return name

    async def find(self, name: str, *, now: float | None = None) -> StoredImage | None:
        """The stored image for a URL's file name, or None (unknown, malformed or expired)."""
        match = _NAME.fullmatch(name)
        if match is None:
            return None
        image_id, image_format = match.groups()
        with self._connect() as conn:
            row = conn.execute("SELECT expires_at FROM images WHERE id = ? AND format = ?",
                               (image_id, image_format)).fetchone()
        now = time.time() if now is None else now
        if row is None or row[0] <= now:
            return None
        blob = await self.blobs.get(f"{image_id}.{image_format}")
        return StoredImage(blob, f"image/{image_format}", int(row[0])) if blob is not None else None

    async def purge(self, *, now: float | None = None) -> int:
        """Delete expired images (object, then index row); returns how many."""
        now = time.time() if now is None else now
        if not self.db.exists():
            return 0
        with self._connect() as conn:
            rows = conn.execute("SELECT id, format FROM images WHERE expires_at <= ?", (int(now),)).fetchall()
        for image_id, image_format in rows:
            await self.blobs.delete(f"{image_id}.{image_format}")
            with self._connect() as conn:
                conn.execute("DELETE FROM images WHERE id = ?", (image_id,))
        return len(rows)
