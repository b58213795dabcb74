"""Proxy API keys: minted from `secrets`, stored only as SHA-256 hashes in the embedded SQLite store.

Imports stdlib and errors. A key carries 256 bits of randomness, so an unsalted fast hash is safe
and lets a lookup be a single indexed query; the key itself is shown once and never written down.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from cfai_cli.errors import ConfigError

KEY_PREFIX = "sk-proj-"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
"""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    name: str
    hint: str
    created_at: int
    revoked_at: int | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    # 32 random bytes = 256 bits, url-safe base64 without padding (43 characters).
    return KEY_PREFIX + secrets.token_urlsafe(32)


class KeyStore:
    """The api_keys table of the cfai database (created on first use, 0600 in a 0700 directory)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ready = False

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            with closing(sqlite3.connect(self.path, timeout=10)) as conn:
                conn.execute("PRAGMA busy_timeout = 10000")
                if not self._ready:
                    conn.executescript(_SCHEMA)
                    self._ready = True
                with conn:
                    yield conn
        except sqlite3.Error as exc:
            raise ConfigError(f"Cannot use the key store {self.path}: {exc}") from None

    def create(self, name: str) -> tuple[str, KeyRecord]:
        """Mint a key; returns the key (shown once) and its stored record."""
        key = new_key()
        record = KeyRecord(id="key_" + secrets.token_hex(8), name=name,
                           hint=f"{key[:len(KEY_PREFIX) + 4]}…{key[-4:]}", created_at=int(time.time()),
                           revoked_at=None)
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO api_keys (id, name, hash, hint, created_at) VALUES (?, ?, ?, ?, ?)",
                (record.id, record.name, hash_key(key), record.hint, record.created_at),
            )
        return key, record

    def verify(self, key: str) -> KeyRecord | None:
        """The active key record for `key`, or None."""
        if not key.startswith(KEY_PREFIX) or len(key) > 256:
            return None
        digest = hash_key(key)
        with self._connect() as conn:
            row = conn.execute(
                "SELECT id, name, hint, created_at, revoked_at, hash FROM api_keys WHERE hash = ?", (digest,)
            ).fetchone()
        if row is None or not hmac.compare_digest(row[5], digest) or row[4] is not None:
            return None
        return KeyRecord(*row[:5])

    def list(self) -> list[KeyRecord]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id, name, hint, created_at, revoked_at FROM api_keys ORDER BY created_at, id"
            ).fetchall()
        return [KeyRecord(*row) for row in rows]

    def count_active(self) -> int:
        if not self.path.exists():
            return 0
        with self._connect() as conn:
            (count,) = conn.execute("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL").fetchone()
        return int(count)

    def revoke(self, key_id: str) -> bool:
        with self._connect() as conn:
            cur = conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                               (int(time.time()), key_id))
        return cur.rowcount > 0
