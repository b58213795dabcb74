"""Generated images kept for `response_format: "url"`: files under the data dir, indexed in SQLite, with a TTL.

Imports stdlib and store.db. Ids are 32 url-safe random characters (192 bits), so a URL is as good as a
signed link; lookups go through the index, never through a path built from user input.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import sqlite3
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from cfai_cli.store.db import connect

_NAME = re.compile(r"^([A-Za-z0-9_-]{32})\.(png|jpeg|webp)$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    format TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS images_expiry ON images (expires_at);
"""


@dataclass(frozen=True, slots=True)
class StoredImage:
    path: Path
    content_type: str
    expires_at: int


class ImageStore:
    def __init__(self, database: Path, directory: Path, *, ttl_seconds: float) -> None:
        self.database = database
        self.directory = directory
        self.ttl = ttl_seconds

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return connect(self.database, _SCHEMA, immediate=True)

    def save(self, data: bytes, image_format: str, *, now: float | None = None) -> str:
        """Store the image; returns its file name (`<id>.<format>`). Expired images are removed on the way."""
        now = time.time() if now is None else now
        self.purge(now=now)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        image_id = secrets.token_urlsafe(24)
        path = self.directory / f"{image_id}.{image_format}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        with self._connect() as conn:
            conn.execute("INSERT INTO images (id, format, created_at, expires_at) VALUES (?, ?, ?, ?)",
                         (image_id, image_format, int(now), int(now + self.ttl)))
        return path.name

    def find(self, name: str, *, now: float | None = None) -> StoredImage | None:
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
        path = self.directory / f"{image_id}.{image_format}"
        return StoredImage(path, f"image/{image_format}", int(row[0])) if path.is_file() else None

    def purge(self, *, now: float | None = None) -> int:
        """Delete expired images (files and index rows); returns how many."""
        now = time.time() if now is None else now
        if not self.database.exists():
            return 0
        with self._connect() as conn:
            rows = conn.execute("SELECT id, format FROM images WHERE expires_at <= ?", (int(now),)).fetchall()
            for image_id, image_format in rows:
                with contextlib.suppress(FileNotFoundError):
                    (self.directory / f"{image_id}.{image_format}").unlink()
            conn.execute("DELETE FROM images WHERE expires_at <= ?", (int(now),))
        return len(rows)
