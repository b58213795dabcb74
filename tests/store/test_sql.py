"""The storage layer: one transaction API and one migrated schema over SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from cfai_cli.errors import ConfigError
from cfai_cli.store.keys import KeyStore, hash_key, new_key
from cfai_cli.store.migrations import LATEST, applied
from cfai_cli.store.sql import PostgresDatabase, open_database, pg_sql
from tests.databases import another


def test_statements_are_rewritten_for_psycopg_once() -> None:
    assert pg_sql("SELECT 1 WHERE a LIKE 'x%' AND b = ? AND c IN (?, ?) AND owner IS ? AND d IS NULL") == \
        "SELECT 1 WHERE a LIKE 'x%%' AND b = %s AND c IN (%s, %s) AND owner IS NOT DISTINCT FROM %s AND d IS NULL"
    assert pg_sql("SELECT ?") is pg_sql("SELECT ?")  # cached per statement string


def test_a_write_transaction_is_one_writer_at_a_time(database: Path | str) -> None:
    """Read, check, write: 12 threads adding one each end at 12 (without the lock PostgreSQL loses most)."""
    db = open_database(database)
    with db.transaction(write=True) as tx:
        tx.execute("INSERT INTO cli_state (key, value) VALUES ('n', '0')")

    def add_one() -> None:
        with db.transaction(write=True, lock="counter") as tx:
            n = int(tx.execute("SELECT value FROM cli_state WHERE key = 'n'").fetchone()[0])
            time.sleep(0.01)  # the window another writer would slip into
            tx.execute("UPDATE cli_state SET value = ? WHERE key = 'n'", (str(n + 1),))

    threads = [threading.Thread(target=add_one) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with db.transaction() as tx:
        assert tx.execute("SELECT value FROM cli_state WHERE key = 'n'").fetchone()[0] == "12"


def test_the_schema_is_migrated_once_and_a_newer_one_is_refused(database: Path | str) -> None:
    db = open_database(database)
    assert [v for v, _, _ in applied(db)] == list(range(1, LATEST + 1))
    with db.transaction(write=True) as tx:
        tx.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'from the future', 0)",
                   (LATEST + 1,))
    fresh = another(database)  # a process started later, by an older cfai than the one that migrated
    newer = rf"database schema {LATEST + 1} is newer than this cfai \({LATEST}\)"
    with pytest.raises(ConfigError, match=newer), fresh.transaction():
        pass
    fresh.close()


def test_an_unreachable_postgresql_names_the_place_never_the_password() -> None:
    db = PostgresDatabase("postgresql://cfai:s3cret-pw@127.0.0.1:1/gateway")
    with pytest.raises(ConfigError) as caught:
        KeyStore(db).list()
    message = str(caught.value)
    assert message.startswith("cannot reach the database at 127.0.0.1:1/gateway: ")
    assert "s3cret-pw" not in message


def test_a_cfai_db_made_before_migrations_is_adopted_unchanged(tmp_path: Path) -> None:
    """The schema the stores made themselves until now (keys with triggers, the usage log): kept, and version 1."""
    path = tmp_path / "cfai.db"
    key = new_key()
    with sqlite3.connect(path) as conn:
        conn.executescript("""
            CREATE TABLE api_keys (id TEXT PRIMARY KEY, name TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
                hint TEXT NOT NULL, created_at INTEGER NOT NULL, revoked_at INTEGER, scopes TEXT, models TEXT,
                rpm INTEGER, rpd INTEGER, tpm INTEGER, expires_at INTEGER, cache INTEGER,
                budget_neurons_per_day REAL, budget_usd_per_month REAL);
            CREATE TABLE api_keys_epoch (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL);
            INSERT OR IGNORE INTO api_keys_epoch (id, n) VALUES (1, 0);
            CREATE TRIGGER api_keys_epoch_insert AFTER INSERT ON api_keys
                BEGIN UPDATE api_keys_epoch SET n = n + 1; END;
            CREATE TABLE usage_log (ts REAL NOT NULL, key_id TEXT, route TEXT NOT NULL, model TEXT,
                upstream_model TEXT, status INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL DEFAULT 0,
                completion_tokens INTEGER NOT NULL DEFAULT 0, latency_ms REAL NOT NULL,
                bytes_in INTEGER NOT NULL DEFAULT 0, bytes_out INTEGER NOT NULL DEFAULT 0, error_code TEXT);
        """)
        conn.execute("INSERT INTO api_keys (id, name, hash, hint, created_at, rpm) VALUES "
                     "('key_old', 'laptop', ?, 'sk-proj-x…y', 1, 5)", (hash_key(key),))
        conn.execute("INSERT INTO usage_log (ts, key_id, route, status, latency_ms) VALUES "
                     "(1.5, 'key_old', '/v1/chat/completions', 200, 12.0)")
    store = KeyStore(path)
    record = store.verify(key)
    assert record is not None and record.name == "laptop" and record.policy.rpm == 5
    assert [v for v, _, _ in applied(store.db)] == list(range(1, LATEST + 1))
    with store.db.transaction() as tx:
        assert tx.execute("SELECT key_id, route, account FROM usage_log").fetchall() == \
            [("key_old", "/v1/chat/completions", None)]  # its rows kept, the newer columns added
        assert tx.execute("SELECT n FROM api_keys_epoch").fetchone()[0] == 1
    store.create("new one")  # and it keeps working: the epoch triggers are there
    with store.db.transaction() as tx:
        assert tx.execute("SELECT n FROM api_keys_epoch").fetchone()[0] == 2
