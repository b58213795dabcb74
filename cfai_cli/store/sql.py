"""One transaction API over the two databases a store may live in: the SQLite file (the default) or PostgreSQL.

Imports stdlib, errors and store.db; psycopg is imported only when a postgresql:// target is first used, so the
single-host path never loads it. The stores write one SQL text for both engines (`?` placeholders, ON CONFLICT,
COALESCE(SUM()), FLOOR, `owner IS ?`); the PostgreSQL side rewrites each statement string once (`?` -> `%s`,
a literal `%` -> `%%`, `IS ?` -> `IS NOT DISTINCT FROM %s`) and hands back rows as tuples, like sqlite3.
A write transaction is SQLite's BEGIN IMMEDIATE (one writer for the file) or, on PostgreSQL, a transaction-scoped
advisory lock named by the store, so read-check-write code stays exact across replicas (row MVCC alone would lose
updates).
The schema is not the stores' any more: store.migrations applies one versioned list on first use.
"""

from __future__ import annotations

import select
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urlsplit

from cfai_cli.errors import ConfigError, StoreUnavailable
from cfai_cli.store.db import connect

if TYPE_CHECKING:
    from psycopg import Connection
    from psycopg_pool import ConnectionPool

Engine = Literal["sqlite", "postgres"]
PG_SCHEMES = ("postgresql", "postgres")


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Tx(Protocol):
    """One transaction: sqlite3.Connection itself on SQLite (nothing in between on the default path)."""

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor: ...
    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> Any: ...


# Column types the shared schema names by placeholder: SQLite's REAL is 8 bytes, PostgreSQL's only 4.
TYPES: dict[Engine, dict[str, str]] = {
    "sqlite": {"INT": "INTEGER", "REAL": "REAL", "BLOB": "BLOB", "SEQ": "INTEGER PRIMARY KEY AUTOINCREMENT"},
    "postgres": {"INT": "BIGINT", "REAL": "DOUBLE PRECISION", "BLOB": "BYTEA",
                 "SEQ": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"},
}


@lru_cache(maxsize=4096)
def pg_sql(text: str) -> str:
    """A statement for psycopg: `?` placeholders become `%s`, a literal `%` (LIKE patterns) `%%`, and SQLite's
    null-safe `x IS ?` (an owner that may be NULL) PostgreSQL's `x IS NOT DISTINCT FROM %s`. (SQLite has that
    spelling too, but only from 3.39: the single host's SQL stays as old SQLites read it.)"""
    return text.replace("%", "%%").replace(" IS ?", " IS NOT DISTINCT FROM ?").replace("?", "%s")


def is_postgres_url(value: str) -> bool:
    return urlsplit(value).scheme in PG_SCHEMES


def place(url: str) -> str:
    """host:port/db of a PostgreSQL URL for messages: never the user or the password."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or '/'}"


class Database:
    """Where the stores' tables live; one per target per process (`open_database`)."""

    engine: Engine
    label: str  # for messages: the file, or host:port/db

    def transaction(self, *, write: bool = False, lock: str | None = "cfai") -> AbstractContextManager[Tx]:
        raise NotImplementedError

    def types(self) -> dict[str, str]:
        return TYPES[self.engine]

    def exists(self) -> bool:
        """False for a SQLite file not made yet (readers answer "nothing" without creating it)."""
        return True

    def close(self) -> None:
        """Release pooled connections (tests; a process's databases otherwise live as long as it)."""


class SqliteDatabase(Database):
    engine: Engine = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = str(path)
        # db.connect runs its `schema` and `migrate` once per (file, schema) per process: once per Database.
        self._once = f"-- cfai migrations ({id(self)})"

    def transaction(self, *, write: bool = False, lock: str | None = "cfai") -> AbstractContextManager[Tx]:
        # One writer for the whole file (BEGIN IMMEDIATE): `lock` names no finer unit on SQLite.
        from cfai_cli.store.migrations import migrate_sqlite

        def migrate(conn: sqlite3.Connection) -> None:
            migrate_sqlite(conn)

        return connect(self.path, self._once, immediate=write, migrate=migrate)

    def exists(self) -> bool:
        return self.path.exists()


class _PgTx:
    """psycopg's connection behind the sqlite3-shaped calls the stores make."""

    __slots__ = ("conn",)

    def __init__(self, conn: Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        return self.conn.execute(pg_sql(sql), parameters)

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(pg_sql(sql), seq_of_parameters)


class PostgresDatabase(Database):
    """The PostgreSQL store through a psycopg_pool pool. While the server is unreachable at run time a transaction
    fails with StoreUnavailable (a 503) within WAIT seconds, and for PAUSE seconds after such a wait at once (no
    thread waits on a dead server per request; a connection lost mid-transaction fails only its own). The pool
    keeps reconnecting in the background, and requests work again as soon as the server answers, no restart."""

    engine: Engine = "postgres"
    POOL_MAX = 10  # connections per process; the stores hold one only for a transaction
    CONNECT_TIMEOUT = 10.0  # at start: a clear error rather than a hang
    WAIT = 3.0  # at run time: the longest a transaction waits for a connection (libpq's connect_timeout too)
    RECONNECT = 5.0  # the pool's background reconnection gives up after this; the next request starts another
    PAUSE = 1.0  # after WAIT seconds without a connection, transactions fail at once for this long

    def __init__(self, url: str) -> None:
        self.url = url
        self.label = place(url)
        self._pool: ConnectionPool[Any] | None = None
        self._lock = threading.Lock()
        self._migrated = False
        self._failed_at: float | None = None  # time.monotonic() of the last wait for a connection that failed

    def pool(self) -> ConnectionPool[Any]:
        """The pool, opened on first use; an unreachable server is StoreUnavailable (a ConfigError) naming
        host:port/db only."""
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = self._open()
        return self._pool

    def _open(self) -> ConnectionPool[Any]:
        try:
            import psycopg
            from psycopg.adapt import Dumper
            from psycopg.types.numeric import FloatLoader
            from psycopg_pool import ConnectionPool, PoolTimeout
        except ImportError as exc:
            raise ConfigError(f"[store] url is a PostgreSQL URL, but {exc.name} is not installed: "
                              "pip install 'psycopg[binary]' psycopg-pool") from None

        class BoolAsInt(Dumper):
            oid = psycopg.adapters.types["int8"].oid

            def dump(self, obj: Any) -> bytes:
                return b"1" if obj else b"0"

        def configure(conn: psycopg.Connection[Any]) -> None:
            # SUM() of a BIGINT is NUMERIC: read it as float, as SQLite's sums are (no Decimal in the stores).
            conn.adapters.register_loader("numeric", FloatLoader)
            # Flags are INTEGER columns on both engines; SQLite stores True as 1, and so does this.
            conn.adapters.register_dumper(bool, BoolAsInt)

        # One plain connection first: an unreachable or refusing server is reported at once, with libpq's
        # reason (the pool would only time out after retrying).
        # StoreUnavailable is a ConfigError (exit 3 for the CLI), and a 503 for a server whose pool opens only
        # now (a --no-auth gateway's first use may come during an outage).
        try:
            psycopg.connect(self.url, connect_timeout=int(self.CONNECT_TIMEOUT)).close()
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"cannot reach the database at {self.label}: {_clean(exc)}") from None
        except psycopg.Error as exc:
            raise ConfigError(f"cannot reach the database at {self.label}: {_clean(exc)}") from None
        pool: ConnectionPool[Any] = ConnectionPool(self.url, min_size=1, max_size=self.POOL_MAX, open=False,
                                                   configure=configure, check=_check, name=self.label,
                                                   timeout=self.WAIT, reconnect_timeout=self.RECONNECT,
                                                   kwargs={"connect_timeout": max(2, int(self.WAIT))})
        try:
            pool.open(wait=True, timeout=self.CONNECT_TIMEOUT)
        except PoolTimeout:
            pool.close()
            raise StoreUnavailable(f"cannot reach the database at {self.label}: no connection within "
                                   f"{self.CONNECT_TIMEOUT:g} s") from None
        if not self._migrated:
            from cfai_cli.store.migrations import migrate_postgres

            with pool.connection() as conn:
                migrate_postgres(conn, self.label)
            self._migrated = True
        return pool

    def direct(self) -> Connection[Any]:
        """One connection outside the pool (not migrating): `cfai db status` reading what is there."""
        import psycopg

        try:
            return psycopg.connect(self.url, connect_timeout=int(self.CONNECT_TIMEOUT))
        except psycopg.Error as exc:
            raise ConfigError(f"cannot reach the database at {self.label}: {_clean(exc)}") from None

    @contextmanager
    def _transaction(self, write: bool, lock: str | None) -> Iterator[Tx]:
        import psycopg

        pool = self.pool()
        if self._failed_at is not None and time.monotonic() - self._failed_at < self.PAUSE:
            raise self._unavailable("it failed less than a second ago")
        try:
            with pool.connection() as conn:  # commits at the end of the block, rolls back on an error
                if write and lock is not None:  # None: a write that reads nothing first (appends) needs no turn
                    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock,))
                yield _PgTx(conn)
        except psycopg.OperationalError as exc:  # unreachable, connection lost, no connection within WAIT
            from psycopg_pool import PoolTimeout

            if isinstance(exc, PoolTimeout):  # no connection at all: the next ones fail at once for a while
                self._failed_at = time.monotonic()
            raise self._unavailable(_clean(exc)) from None
        except psycopg.Error as exc:
            raise ConfigError(f"Cannot use the database {self.label}: {_clean(exc)}") from None
        self._failed_at = None

    def _unavailable(self, reason: str) -> StoreUnavailable:
        return StoreUnavailable(f"The database at {self.label} is unreachable ({reason}). Try again shortly.",
                                retry_after=self.PAUSE)

    def transaction(self, *, write: bool = False, lock: str | None = "cfai") -> AbstractContextManager[Tx]:
        return self._transaction(write, lock)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def _check(conn: Connection[Any]) -> None:
    """The pool's check of a connection it hands out, without a round trip: an idle connection's socket has
    nothing to read unless the server said goodbye (a restart, an administrator's kill) or closed it; only then
    is it really tried (psycopg_pool's own check), and a dead one replaced before a transaction meets it."""
    from psycopg_pool import ConnectionPool

    if conn.closed or select.select([conn.pgconn.socket], [], [], 0)[0]:
        ConnectionPool.check_connection(conn)


def _clean(exc: BaseException) -> str:
    """psycopg's first message line; libpq never puts the password in it, but the URL may hold one: cut it."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


_OPEN: dict[str, Database] = {}
_OPENING = threading.Lock()


def open_database(target: Path | str | Database) -> Database:
    """The Database for a target: the same object (so one pool, one migration check) per target per process."""
    if isinstance(target, Database):
        return target
    key = str(target)
    found = _OPEN.get(key)
    if found is None:
        with _OPENING:
            found = _OPEN.get(key)
            if found is None:
                if isinstance(target, str) and is_postgres_url(target):
                    found = PostgresDatabase(target)
                else:
                    found = SqliteDatabase(Path(target))
                _OPEN[key] = found
    return found


def forget(target: Path | str) -> None:
    """Close and drop a target's Database (tests that drop their PostgreSQL database)."""
    found = _OPEN.pop(str(target), None)
    if found is not None:
        found.close()
