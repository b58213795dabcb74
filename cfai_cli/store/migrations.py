"""The shared schema as one versioned list of migrations, for the SQLite file and for PostgreSQL.

Imports stdlib, errors and store.db (psycopg only through the connection store.sql hands in). Each database
records what it has in `schema_migrations`; the runner applies the missing ones on first use in a process
(a cheap check: one SELECT of the highest version), serialised across processes by SQLite's write lock or a
PostgreSQL advisory lock, each migration in its own transaction. Migration 1 is the schema every cfai before
this one made with CREATE TABLE IF NOT EXISTS plus its added columns, so an existing cfai.db becomes version 1
unchanged. A database newer than this cfai is refused rather than written by code that does not know it.

On PostgreSQL the tables whose rows are read in insertion order (cursors, oldest-first pruning) get a `rowid`
identity column, so the stores' `rowid` SQL is one text for both engines; SQLite keeps its own rowid.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cfai_cli.errors import ConfigError
from cfai_cli.store.db import add_columns

if TYPE_CHECKING:
    from psycopg import Connection

    from cfai_cli.store.sql import Database

_PG_LOCK = 0x63666169  # "cfai": the session advisory lock replicas take around the migration loop

_BASELINE = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    created_at {INT} NOT NULL,
    revoked_at {INT},
    scopes TEXT, models TEXT, rpm {INT}, rpd {INT}, tpm {INT}, expires_at {INT}, cache {INT},
    budget_neurons_per_day {REAL}, budget_usd_per_month {REAL}
);
CREATE TABLE IF NOT EXISTS api_keys_epoch (id {INT} PRIMARY KEY CHECK (id = 1), n {INT} NOT NULL);
INSERT INTO api_keys_epoch (id, n) VALUES (1, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS usage_log (
    ts {REAL} NOT NULL,
    key_id TEXT,
    route TEXT NOT NULL,
    model TEXT,
    upstream_model TEXT,
    status {INT} NOT NULL,
    prompt_tokens {INT} NOT NULL DEFAULT 0,
    completion_tokens {INT} NOT NULL DEFAULT 0,
    latency_ms {REAL} NOT NULL,
    bytes_in {INT} NOT NULL DEFAULT 0,
    bytes_out {INT} NOT NULL DEFAULT 0,
    error_code TEXT,
    upstream TEXT,
    cache TEXT,
    neurons {REAL},
    neurons_estimated {INT} NOT NULL DEFAULT 0,
    cost_usd {REAL},
    account TEXT{ROWID}
);
CREATE INDEX IF NOT EXISTS usage_log_ts ON usage_log (ts);
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    created_at {INT} NOT NULL,
    previous_response_id TEXT,
    input_items TEXT NOT NULL,
    response TEXT NOT NULL,
    owner TEXT,
    affinity TEXT{ROWID}
);
CREATE INDEX IF NOT EXISTS responses_created ON responses (created_at);
CREATE TABLE IF NOT EXISTS cli_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS response_cache (
    key TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    kind TEXT NOT NULL,
    model TEXT,
    created_at {REAL} NOT NULL,
    expires_at {REAL} NOT NULL,
    size {INT} NOT NULL,
    body {BLOB} NOT NULL{ROWID}
);
CREATE INDEX IF NOT EXISTS response_cache_expires ON response_cache (expires_at);
CREATE INDEX IF NOT EXISTS response_cache_created ON response_cache (created_at);
CREATE INDEX IF NOT EXISTS response_cache_tenant ON response_cache (tenant);
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    format TEXT NOT NULL,
    created_at {INT} NOT NULL,
    expires_at {INT} NOT NULL{ROWID}
);
CREATE INDEX IF NOT EXISTS images_expiry ON images (expires_at);
CREATE TABLE IF NOT EXISTS key_spend (
    key_id TEXT NOT NULL,
    day TEXT NOT NULL,
    neurons {REAL} NOT NULL,
    PRIMARY KEY (key_id, day){ROWID}
);
CREATE TABLE IF NOT EXISTS model_cost (model TEXT PRIMARY KEY, neurons {REAL} NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY,
    owner TEXT,
    purpose TEXT NOT NULL,
    filename TEXT NOT NULL,
    bytes {INT} NOT NULL,
    created_at {INT} NOT NULL,
    expires_at {INT},
    lines {INT}{ROWID}
);
CREATE INDEX IF NOT EXISTS files_owner ON files (owner, purpose);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    owner TEXT,
    endpoint TEXT NOT NULL,
    input_file_id TEXT NOT NULL,
    completion_window TEXT NOT NULL,
    metadata TEXT,
    status TEXT NOT NULL,
    created_at {INT} NOT NULL,
    in_progress_at {INT}, expires_at {INT}, finalizing_at {INT}, completed_at {INT},
    failed_at {INT}, expired_at {INT}, cancelling_at {INT}, cancelled_at {INT},
    errors TEXT,
    output_file_id TEXT,
    error_file_id TEXT,
    total {INT} NOT NULL DEFAULT 0,
    completed {INT} NOT NULL DEFAULT 0,
    failed {INT} NOT NULL DEFAULT 0,
    prompt_tokens {INT} NOT NULL DEFAULT 0,
    completion_tokens {INT} NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until {REAL}{ROWID}
);
CREATE INDEX IF NOT EXISTS batches_owner ON batches (owner);
CREATE INDEX IF NOT EXISTS batches_status ON batches (status);
CREATE TABLE IF NOT EXISTS batch_lines (
    batch_id TEXT NOT NULL,
    line {INT} NOT NULL,
    custom_id TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    ok {INT},
    output TEXT,
    PRIMARY KEY (batch_id, line)
);
CREATE TABLE IF NOT EXISTS batch_jobs (
    batch_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    job TEXT NOT NULL,
    lines TEXT NOT NULL,
    PRIMARY KEY (batch_id, job_id){ROWID}
);
"""

# api_keys_epoch counts every change to api_keys (whoever makes it), so a key cache knows when to drop itself.
_SQLITE_EPOCH = """
CREATE TRIGGER IF NOT EXISTS api_keys_epoch_insert AFTER INSERT ON api_keys
    BEGIN UPDATE api_keys_epoch SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS api_keys_epoch_update AFTER UPDATE ON api_keys
    BEGIN UPDATE api_keys_epoch SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS api_keys_epoch_delete AFTER DELETE ON api_keys
    BEGIN UPDATE api_keys_epoch SET n = n + 1; END;
"""
_PG_EPOCH = (
    "CREATE OR REPLACE FUNCTION cfai_api_keys_epoch() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN UPDATE api_keys_epoch SET n = n + 1; RETURN NULL; END $$",
    "CREATE TRIGGER api_keys_epoch_change AFTER INSERT OR UPDATE OR DELETE ON api_keys "
    "FOR EACH STATEMENT EXECUTE FUNCTION cfai_api_keys_epoch()",
)

# Columns older cfai versions added to tables made before them (ALTER TABLE ADD COLUMN): a file from any of them
# gets the ones it lacks. In the tables' column order: some rows are read with SELECT *.
ADDED: dict[str, dict[str, str]] = {
    "api_keys": {"scopes": "TEXT", "models": "TEXT", "rpm": "INTEGER", "rpd": "INTEGER", "tpm": "INTEGER",
                 "expires_at": "INTEGER", "cache": "INTEGER", "budget_neurons_per_day": "REAL",
                 "budget_usd_per_month": "REAL"},
    "usage_log": {"upstream": "TEXT", "cache": "TEXT", "neurons": "REAL",
                  "neurons_estimated": "INTEGER NOT NULL DEFAULT 0", "cost_usd": "REAL", "account": "TEXT"},
    "responses": {"owner": "TEXT", "affinity": "TEXT"},
}


def _adopt(conn: sqlite3.Connection) -> None:
    for table, columns in ADDED.items():
        add_columns(conn, table, columns)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str  # both engines, with {INT} {REAL} {BLOB} {ROWID} placeholders
    sqlite: str = ""  # SQLite only (triggers)
    postgres: tuple[str, ...] = ()  # PostgreSQL only, one statement each (plpgsql bodies hold semicolons)
    sqlite_fixup: Callable[[sqlite3.Connection], None] | None = None


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "baseline: keys, usage, responses, cache, images, budgets, files, batches", _BASELINE,
              sqlite=_SQLITE_EPOCH, postgres=_PG_EPOCH, sqlite_fixup=_adopt),
    # Neurons per Cloudflare account per UTC day, kept beside the usage log on PostgreSQL (store.usage): what
    # the router's daily caps read there. A SQLite file has it empty (its meter reads the log by row id).
    Migration(2, "account_spend", """
CREATE TABLE IF NOT EXISTS account_spend (
    account TEXT NOT NULL,
    day TEXT NOT NULL,
    neurons {REAL} NOT NULL,
    PRIMARY KEY (account, day)
);
"""),
)
LATEST = MIGRATIONS[-1].version
_TABLE = ("CREATE TABLE IF NOT EXISTS schema_migrations (version {INT} PRIMARY KEY, name TEXT NOT NULL, "
          "applied_at {REAL} NOT NULL)")
_SQLITE_TYPES = {"INT": "INTEGER", "REAL": "REAL", "BLOB": "BLOB", "ROWID": ""}
_PG_TYPES = {"INT": "BIGINT", "REAL": "DOUBLE PRECISION", "BLOB": "BYTEA",
             "ROWID": ",\n    rowid BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE"}


def statements(text: str) -> list[str]:
    """`text` cut into whole statements (sqlite3.complete_statement knows a trigger's BEGIN ... END)."""
    found, part = [], ""
    for line in text.splitlines(keepends=True):
        part += line
        if sqlite3.complete_statement(part):
            found.append(part.strip())
            part = ""
    if part.strip():
        found.append(part.strip())
    return found


def _sqlite_steps(m: Migration) -> list[str]:
    return statements(m.sql.format(**_SQLITE_TYPES)) + statements(m.sqlite)


def _pg_steps(m: Migration) -> list[str]:
    return [s.rstrip(";") for s in statements(m.sql.format(**_PG_TYPES))] + list(m.postgres)


def newer(found: int) -> ConfigError:
    return ConfigError(f"database schema {found} is newer than this cfai ({LATEST}); upgrade cfai")


def migrate_sqlite(conn: sqlite3.Connection) -> list[Migration]:
    """Bring a SQLite file (a connection in autocommit mode) to LATEST; returns the migrations applied."""
    if _sqlite_version(conn) == LATEST:
        return []
    done: list[Migration] = []
    conn.execute("BEGIN IMMEDIATE")  # one migrating process at a time; the others find the work done
    try:
        conn.execute(_TABLE.format(**_SQLITE_TYPES))
        current = _sqlite_version(conn)
        if current > LATEST:
            raise newer(current)
        for m in MIGRATIONS:
            if m.version > current:
                for step in _sqlite_steps(m):
                    conn.execute(step)
                if m.sqlite_fixup is not None:
                    m.sqlite_fixup(conn)
                conn.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                             (m.version, m.name, time.time()))
                done.append(m)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return done


def _sqlite_version(conn: sqlite3.Connection, *, check: bool = True) -> int:
    try:
        found = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]
    except sqlite3.OperationalError:  # no such table: a file from before migrations, or a new one
        return 0
    version = int(found or 0)
    if check and version > LATEST:
        raise newer(version)
    return version


def migrate_postgres(conn: Connection[Any], label: str) -> list[Migration]:
    """Bring a PostgreSQL database to LATEST, holding an advisory lock so replicas starting together take turns."""
    if _pg_version(conn) == LATEST:
        conn.commit()
        return []
    done: list[Migration] = []
    conn.commit()
    conn.autocommit = True
    try:
        conn.execute("SELECT pg_advisory_lock(%s)", (_PG_LOCK,))
        try:
            conn.execute(_TABLE.format(**_PG_TYPES))
            current = _pg_version(conn)
            for m in MIGRATIONS:
                if m.version > current:
                    with conn.transaction():  # PostgreSQL's DDL is transactional: all of a migration or none
                        for step in _pg_steps(m):
                            conn.execute(step)
                        conn.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                                     (m.version, m.name, time.time()))
                    done.append(m)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_PG_LOCK,))
    finally:
        conn.autocommit = False
    return done


def _pg_version(conn: Connection[Any], *, check: bool = True) -> int:
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return 0
    found = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    version = int(found[0] or 0) if found else 0
    if check and version > LATEST:
        raise newer(version)
    return version


def applied(db: Database) -> list[tuple[int, str, float]]:
    """The migrations a database records (after bringing it up to date, as any use does)."""
    with db.transaction() as tx:
        return [(int(v), str(n), float(a)) for v, n, a in
                tx.execute("SELECT version, name, applied_at FROM schema_migrations ORDER BY version").fetchall()]


def recorded(db: Database) -> int:
    """The schema version a database records, read without migrating it (0: none yet, or no file)."""
    from cfai_cli.store.sql import PostgresDatabase, SqliteDatabase

    if isinstance(db, SqliteDatabase):
        if not db.path.exists():
            return 0
        with closing(sqlite3.connect(f"{db.path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)) as conn:
            return _sqlite_version(conn, check=False)
    assert isinstance(db, PostgresDatabase)
    with db.direct() as conn:
        return _pg_version(conn, check=False)


def pending(version: int) -> list[Migration]:
    return [m for m in MIGRATIONS if m.version > version]
