"""Proxy API keys: minted from `secrets`, stored only as SHA-256 hashes, each with its own policy.

Imports stdlib, errors and store.db. A key carries 256 bits of randomness, so an unsalted fast hash is
safe and a lookup is one indexed query on the hash; the key itself is shown once and never written down.
A policy says which scopes and models a key may use, its rate limits and when it expires.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import secrets
import sqlite3
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager, closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfai_cli.errors import ConfigError, Conflict
from cfai_cli.store.migrations import ADDED
from cfai_cli.store.sql import Database, SqliteDatabase, Tx, open_database

if TYPE_CHECKING:  # store.hot imports asyncio: not for the CLI's key commands
    from cfai_cli.store.hot import HotPath

KEY_PREFIX = "sk-proj-"
SCOPES = ("chat", "embeddings", "images", "audio", "models", "admin")
DEFAULT_SCOPES = frozenset(SCOPES) - {"admin"}  # admin (metrics, usage) only when asked for

_COLUMNS = ("id, name, hint, created_at, revoked_at, scopes, models, rpm, rpd, tpm, expires_at, cache, "
            "budget_neurons_per_day, budget_usd_per_month")


@dataclass(frozen=True, slots=True)
class KeyPolicy:
    scopes: frozenset[str] = DEFAULT_SCOPES
    models: tuple[str, ...] = ()  # shell-style patterns; empty = every model
    rpm: int | None = None
    rpd: int | None = None
    tpm: int | None = None
    expires_at: int | None = None
    cache: bool = False  # its requests use the response cache without asking (core.cache; docs/cache.md)
    # Spend budgets (store.budgets; docs/cost.md): neurons per UTC day, USD (list price) per calendar month.
    budget_neurons_per_day: float | None = None
    budget_usd_per_month: float | None = None

    def __post_init__(self) -> None:
        unknown = set(self.scopes) - set(SCOPES)
        if unknown:
            raise ConfigError(f"Unknown scope {sorted(unknown)[0]!r}; scopes are {', '.join(SCOPES)}.")
        for name in ("rpm", "rpd", "tpm"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"--{name} must be at least 1.")
        for name in ("budget_neurons_per_day", "budget_usd_per_month"):
            value = getattr(self, name)
            if value is not None and not value > 0:  # not `<= 0`: NaN is refused too
                raise ConfigError(f"--{name.replace('_', '-')} must be more than 0.")

    def allows_model(self, *names: str) -> bool:
        """True if any of `names` (the requested name, the Workers AI id) matches a pattern."""
        return not self.models or any(fnmatch.fnmatchcase(n, p) for n in names for p in self.models)

    @property
    def limited(self) -> bool:
        return self.rpm is not None or self.rpd is not None or self.tpm is not None

    @property
    def budgeted(self) -> bool:
        return self.budget_neurons_per_day is not None or self.budget_usd_per_month is not None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    name: str
    hint: str
    created_at: int
    revoked_at: int | None
    policy: KeyPolicy = field(default_factory=KeyPolicy)

    def active(self, now: float) -> bool:
        return self.revoked_at is None and (self.policy.expires_at is None or now < self.policy.expires_at)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    # 32 random bytes = 256 bits, url-safe base64 without padding (43 characters).
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _record(row: tuple[Any, ...]) -> KeyRecord:
    key_id, name, hint, created, revoked, scopes, models, rpm, rpd, tpm, expires, cache, per_day, per_month = row
    policy = KeyPolicy(
        scopes=frozenset(str(scopes).split(",")) if scopes else DEFAULT_SCOPES,
        models=tuple(str(models).split(",")) if models else (),
        rpm=rpm, rpd=rpd, tpm=tpm, expires_at=expires, cache=bool(cache),
        budget_neurons_per_day=per_day, budget_usd_per_month=per_month,
    )
    return KeyRecord(str(key_id), str(name), str(hint), int(created), revoked, policy)


def _join(items: Iterable[str]) -> str:
    return ",".join(sorted(items))


class KeyStore:
    """The api_keys table of the cfai database."""

    def __init__(self, target: Path | str | Database, *, hot: HotPath | None = None) -> None:
        """`hot`: the server's hot-path transactions on the same SQLite file, whose loop connection its KeyCache
        reads through (see KeyCache)."""
        self.db = open_database(target)
        self.hot = hot

    def _db(self, *, write: bool = False) -> AbstractContextManager[Tx]:
        # One writer of api_keys at a time: the last-admin check and rotate read, check, then write.
        return self.db.transaction(write=write, lock="api_keys")

    def create(self, name: str, policy: KeyPolicy | None = None) -> tuple[str, KeyRecord]:
        """Mint a key; returns the key (shown once) and its stored record."""
        with self._db(write=True) as conn:
            return _insert(conn, name, policy or KeyPolicy())

    def verify(self, key: str, *, now: float | None = None) -> KeyRecord | None:
        """The active (not revoked, not expired) key record for `key`, or None."""
        if not key.startswith(KEY_PREFIX) or len(key) > 256:
            return None
        digest = hash_key(key)
        with self._db() as conn:
            row = conn.execute(f"SELECT hash, {_COLUMNS} FROM api_keys WHERE hash = ?", (digest,)).fetchone()
        if row is None or not hmac.compare_digest(row[0], digest):
            return None
        record = _record(row[1:])
        return record if record.active(time.time() if now is None else now) else None

    def get(self, key_id: str) -> KeyRecord | None:
        with self._db() as conn:
            return _get(conn, key_id)

    def list(self) -> list[KeyRecord]:
        with self._db() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, id").fetchall()
        return [_record(row) for row in rows]

    def count_active(self) -> int:
        if not self.db.exists():
            return 0
        now = time.time()
        return sum(1 for record in self.list() if record.active(now))

    def revoke(self, key_id: str, *, keep_admin: bool = False) -> bool:
        """Revoke an active key; False if there is none with that id. With `keep_admin`, refuse (Conflict)
        to revoke the last active key with the admin scope, checked in the same write transaction so two
        concurrent revocations cannot both pass the check."""
        with self._db(write=True) as conn:
            old = _get(conn, key_id)
            if old is None or old.revoked_at is not None:
                return False
            if keep_admin:
                _keep_an_admin(conn, old, None)
            conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (int(time.time()), key_id))
        return True

    def update(self, key_id: str, *, name: str | None = None, policy: KeyPolicy | None = None,
               keep_admin: bool = False) -> KeyRecord | None:
        """Change a key's name and policy in place (the secret stays); None if there is no such key.
        A revoked key cannot be changed (Conflict); with `keep_admin`, neither can the last active admin
        key lose its admin scope or its life (an expiry in the past)."""
        with self._db(write=True) as conn:
            old = _get(conn, key_id)
            if old is None:
                return None
            if old.revoked_at is not None:
                raise Conflict(f"Key {key_id} is revoked; a revoked key cannot be changed.", code="key_revoked")
            new = replace(old, name=old.name if name is None else name, policy=policy or old.policy)
            if keep_admin:
                _keep_an_admin(conn, old, new)
            conn.execute("UPDATE api_keys SET name = ?, scopes = ?, models = ?, rpm = ?, rpd = ?, tpm = ?, "
                         "expires_at = ?, cache = ?, budget_neurons_per_day = ?, budget_usd_per_month = ? "
                         "WHERE id = ?", (new.name, *_policy_values(new.policy), key_id))
        return new

    def cache(self) -> KeyCache:
        """A verifier for a long-running server (see KeyCache)."""
        return KeyCache(self, self.hot)

    def rotate(self, key_id: str) -> tuple[str, KeyRecord] | None:
        """A new key with the same name and policy; the old one is revoked in the same transaction, so no
        moment has both or neither working. None if `key_id` is not active."""
        with self._db(write=True) as conn:
            old = _get(conn, key_id)
            if old is None or not old.active(time.time()):
                return None
            key, record = _insert(conn, old.name, old.policy)
            conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (int(time.time()), key_id))
        return key, record


def _policy_values(policy: KeyPolicy) -> tuple[Any, ...]:
    """The policy columns, in _COLUMNS order (scopes .. budgets); defaults stored as NULL."""
    return (_join(policy.scopes) if policy.scopes != DEFAULT_SCOPES else None, ",".join(policy.models) or None,
            policy.rpm, policy.rpd, policy.tpm, policy.expires_at, 1 if policy.cache else None,
            policy.budget_neurons_per_day, policy.budget_usd_per_month)


def _insert(conn: Tx, name: str, policy: KeyPolicy) -> tuple[str, KeyRecord]:
    key = new_key()
    record = KeyRecord(id="key_" + secrets.token_hex(8), name=name,
                       hint=f"{key[:len(KEY_PREFIX) + 4]}…{key[-4:]}", created_at=int(time.time()),
                       revoked_at=None, policy=policy)
    conn.execute(f"INSERT INTO api_keys (hash, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (hash_key(key), record.id, record.name, record.hint, record.created_at, None,
                  *_policy_values(policy)))
    return key, record


def _get(conn: Tx, key_id: str) -> KeyRecord | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    return _record(row) if row else None


def _is_admin(record: KeyRecord, now: float) -> bool:
    return record.active(now) and "admin" in record.policy.scopes


def _keep_an_admin(conn: Tx, old: KeyRecord, new: KeyRecord | None) -> None:
    """Raise Conflict if turning `old` into `new` (None: revoking it) leaves no active admin key."""
    now = time.time()
    if not _is_admin(old, now) or (new is not None and _is_admin(new, now)):
        return
    rows = conn.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE revoked_at IS NULL AND id != ?", (old.id,))
    if not any(_is_admin(_record(row), now) for row in rows.fetchall()):
        raise Conflict(f"Key {old.id} is the last active key with the admin scope: "
                       f"{'revoking it' if new is None else 'this change'} would leave nobody able to administer "
                       "the proxy over HTTP. Make another admin key first.", code="last_admin_key")


class CacheUnavailable(Exception):
    """The cache could not read the database just now (locked, gone); verify through the store instead."""


class KeyCache:
    """Verified keys for the proxy: one read connection and the records seen, kept until the keys change.

    `PRAGMA data_version` changes whenever any other connection commits; then `api_keys_epoch`, which triggers
    count up on every change to api_keys (whoever makes it: a revoke, a new key, an older cfai), says whether
    the keys changed, and if so the cache is dropped before the lookup: a revoked key is refused on its very
    next request. The usage log's and the rate limits' commits (one or two a request for a limited key) leave
    it alone: reloading the key cost ~28 µs a request. In WAL mode these reads are microseconds and never wait
    for a writer, cheap enough for the event loop: no thread hop and no new connection per request.
    Given the server's HotPath (`hot`), it reads through that path's loop connection whenever it is free: a
    connection's data_version does not move for its own commits, and the rate limits' and budgets' commits are
    made on it (never a change to api_keys), so a limited key's request does not even read the epoch again,
    nor its pages dropped from the cache by the commit (bench/keys_syscalls.py, 2026-12-02: ~15 µs of CPU and
    two preads a request). Its own connection when the loop's is busy (another thread's loop: tests).
    """

    _MAX = 10_000  # records (and unknown keys) kept; guessed keys cannot grow memory without bound

    def __init__(self, store: KeyStore, hot: HotPath | None = None) -> None:
        self.store = store
        self.hot = hot
        self._conn: sqlite3.Connection | None = None
        self._version: int | None = None
        self._version_of: sqlite3.Connection | None = None  # whose data_version `_version` is
        self._epoch: int | None = None
        self._records: dict[str, KeyRecord | None] = {}
        self._shared_records: dict[str, tuple[int, KeyRecord | None]] = {}  # PostgreSQL: digest -> (epoch, record)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            with self.store._db():  # creates the file and schema (and migrates) like every other reader
                pass
            assert isinstance(self.store.db, SqliteDatabase)
            conn = sqlite3.connect(self.store.db.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 50")
            self._conn = conn
        return self._conn

    def verify(self, key: str, *, now: float | None = None) -> KeyRecord | None:
        """Like KeyStore.verify; raises CacheUnavailable when the database cannot be read right now."""
        if not key.startswith(KEY_PREFIX) or len(key) > 256:
            return None
        digest = hash_key(key)
        try:
            record = self._local(digest) if self.local else self._shared(digest)
        except (sqlite3.Error, ConfigError):
            self.close()
            raise CacheUnavailable from None
        return record if record is not None and record.active(time.time() if now is None else now) else None

    def _local(self, digest: str) -> KeyRecord | None:
        hot = self.hot
        if hot is not None and self._conn is not None:  # opened once (file, schema) before the loop's is used
            lent = hot.connections.lend()
            if lent is not None:
                try:
                    return self._lookup(lent, digest)
                finally:
                    hot.connections.give_back()
        return self._lookup(self._connection(), digest)

    def _lookup(self, conn: sqlite3.Connection, digest: str) -> KeyRecord | None:
        # fetchall() steps each statement to its end, so no read transaction (snapshot) stays open.
        version = conn.execute("PRAGMA data_version").fetchall()[0][0]
        if version != self._version or conn is not self._version_of:  # versions of two connections differ
            self._saw(conn.execute("SELECT n FROM api_keys_epoch").fetchall()[0][0])
            self._version, self._version_of = version, conn
        if digest in self._records:
            return self._records[digest]
        return self._remember(digest, conn.execute(f"SELECT hash, {_COLUMNS} FROM api_keys WHERE hash = ?",
                                                   (digest,)).fetchall())

    def _shared(self, digest: str) -> KeyRecord | None:
        """PostgreSQL: the epoch is read on every lookup (one indexed row), so a key minted, changed or revoked
        through another replica is seen by the very next request here; unknown keys are forgotten with it.
        Lookups run in threads here (a network round trip each): every entry carries the epoch it was read at
        and counts only while the epoch is still that, so a slow thread cannot leave a stale entry behind."""
        with self.store._db() as tx:
            epoch = int(tx.execute("SELECT n FROM api_keys_epoch").fetchone()[0])
            found = self._shared_records.get(digest)
            if found is not None and found[0] == epoch:
                return found[1]
            rows = tx.execute(f"SELECT hash, {_COLUMNS} FROM api_keys WHERE hash = ?", (digest,)).fetchall()
        record = _record(rows[0][1:]) if rows and hmac.compare_digest(rows[0][0], digest) else None
        if len(self._shared_records) >= self._MAX:
            self._shared_records.clear()
        self._shared_records[digest] = (epoch, record)
        return record

    @property
    def local(self) -> bool:
        """True when a lookup is a read of the SQLite file (microseconds: fine on the event loop)."""
        return isinstance(self.store.db, SqliteDatabase)

    def _saw(self, epoch: int) -> None:
        if epoch != self._epoch:
            self._records.clear()
            self._epoch = epoch

    def _remember(self, digest: str, rows: list[Any]) -> KeyRecord | None:
        record = _record(rows[0][1:]) if rows and hmac.compare_digest(rows[0][0], digest) else None
        if len(self._records) >= self._MAX:
            self._records.clear()
        self._records[digest] = record
        return record

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._version = self._epoch = self._version_of = None
        self._records.clear()
        self._shared_records.clear()


def schema_problem(path: Path) -> str | None:
    """What keeps the key store at `path` from being this cfai's (None: it is), read-only (`cfai doctor`)."""
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "api_keys" not in tables:
                return None  # no key made yet: the table is created with the first one
            have = {row[1] for row in conn.execute("PRAGMA table_info(api_keys)")}
    except sqlite3.Error as exc:
        return f"cannot be read ({exc})"
    missing = sorted(set(ADDED["api_keys"]) - have)
    return f"the api_keys table lacks {', '.join(missing)} (made by an older cfai)" if missing else None
