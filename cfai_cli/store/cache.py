"""The response cache's table: answers by key, each with its tenant, expiry and size, in the cfai database.

Imports stdlib and store.db. Callers pass the time (`now`), so tests move the clock instead of sleeping.
A write deletes what has expired (a batch at most) and then the oldest entries until the table is within
its entry and byte bounds; the proxy's hourly housekeeping deletes what expired in between
(server.housekeeping). Reads check the tenant and the expiry again, so neither a hash collision nor a late
prune can serve another tenant's or a stale answer.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from cfai_cli.store.sql import Database, Tx, open_database

BATCH = 5_000  # rows one delete statement (and transaction) removes at most


@dataclass(frozen=True, slots=True)
class Entry:
    body: bytes
    model: str | None  # the model that answered when it was stored


@dataclass(frozen=True, slots=True)
class Bounds:
    ttl: float
    max_entries: int
    max_bytes: int


@dataclass(frozen=True, slots=True)
class CacheStats:
    entries: int
    bytes: int
    expired: int  # stored but past their time, not yet deleted


class CacheStore:
    """The response_cache table of the cfai database (created on first use, 0600 in a 0700 directory)."""

    def __init__(self, target: Path | str | Database) -> None:
        self.db = open_database(target)

    def _db(self, *, write: bool = False) -> AbstractContextManager[Tx]:
        # A put evicts by what it counts: one writer of the table at a time, across replicas too.
        return self.db.transaction(write=write, lock="response_cache")

    def get(self, key: str, *, tenant: str, now: float) -> Entry | None:
        with self._db() as conn:
            row = conn.execute("SELECT body, model FROM response_cache WHERE key = ? AND tenant = ? AND expires_at > ?",
                               (key, tenant, now)).fetchone()
        return None if row is None else Entry(bytes(row[0]), row[1])

    def put(self, key: str, body: bytes, *, tenant: str, kind: str, model: str | None, now: float,
            bounds: Bounds) -> None:
        with self._db(write=True) as conn:
            conn.execute("INSERT INTO response_cache (key, tenant, kind, model, created_at, expires_at, size, body) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET tenant = excluded.tenant, "
                         "kind = excluded.kind, model = excluded.model, created_at = excluded.created_at, "
                         "expires_at = excluded.expires_at, size = excluded.size, body = excluded.body",
                         (key, tenant, kind, model, now, now + bounds.ttl, len(body), body))
            _delete_expired(conn, now, BATCH)
            _evict(conn, bounds)

    def prune(self, *, now: float, budget: int = 100_000) -> int:
        """Delete up to `budget` expired entries, a batch per transaction (the housekeeping's pass)."""
        if not self.db.exists():
            return 0
        done = 0
        while done < budget:
            want = min(BATCH, budget - done)
            with self._db(write=True) as conn:
                deleted = _delete_expired(conn, now, want)
            done += deleted
            if deleted < want:
                break
        return done

    def stats(self, *, now: float) -> CacheStats:
        if not self.db.exists():
            return CacheStats(0, 0, 0)
        with self._db() as conn:
            live, size = conn.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM response_cache "
                                      "WHERE expires_at > ?", (now,)).fetchone()
            expired = conn.execute("SELECT COUNT(*) FROM response_cache WHERE expires_at <= ?", (now,)).fetchone()[0]
        return CacheStats(int(live), int(size), int(expired))

    def clear(self, *, tenants: list[str] | None = None) -> int:
        """Delete every entry, or those of `tenants` (key ids; "" is the shared tenant of a server without keys)."""
        if not self.db.exists():
            return 0
        with self._db(write=True) as conn:
            if tenants is None:
                return int(conn.execute("DELETE FROM response_cache").rowcount)
            marks = ",".join("?" * len(tenants))
            return int(conn.execute(f"DELETE FROM response_cache WHERE tenant IN ({marks})", tenants).rowcount)


def _delete_expired(conn: Tx, now: float, limit: int) -> int:
    cur = conn.execute("DELETE FROM response_cache WHERE rowid IN (SELECT rowid FROM response_cache "
                       "WHERE expires_at <= ? LIMIT ?)", (now, limit))
    return int(cur.rowcount)


def _evict(conn: Tx, bounds: Bounds) -> None:
    """The oldest entries deleted until the table holds at most `max_entries` and `max_bytes`."""
    count, size = conn.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM response_cache").fetchone()
    if count <= bounds.max_entries and size <= bounds.max_bytes:
        return
    doomed: list[int] = []
    for rowid, row_size in conn.execute("SELECT rowid, size FROM response_cache ORDER BY created_at, rowid"):
        if count <= bounds.max_entries and size <= bounds.max_bytes:
            break
        doomed.append(rowid)
        count -= 1
        size -= row_size
    for start in range(0, len(doomed), 500):
        part = doomed[start:start + 500]
        conn.execute(f"DELETE FROM response_cache WHERE rowid IN ({','.join('?' * len(part))})", part)
