"""KeyCache: verified keys served from memory until any commit to the database, so revocation is immediate."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from cfai_cli.store.keys import KeyPolicy, KeyStore
from tests.databases import another


def test_cache_answers_like_the_store_and_sees_every_change(database: Path | str) -> None:
    store = KeyStore(database)
    cache = store.cache()
    key, record = store.create("a")
    assert cache.verify(key) == record
    assert cache.verify(key) == record  # from memory this time
    assert cache.verify("sk-proj-unknown") is None
    # A key made after a miss was cached (by another connection, as `cfai keygen` or another replica would)
    # works at once.
    other = KeyStore(another(database))
    late_key, late = other.create("late")
    assert cache.verify(late_key) == late
    # Revocation through another connection counts on the very next lookup.
    assert other.revoke(record.id)
    assert cache.verify(key) is None
    assert cache.verify(late_key) == late
    cache.close()
    other.db.close()


def test_cache_still_honours_expiry(database: Path | str) -> None:
    store = KeyStore(database)
    key, record = store.create("short", KeyPolicy(expires_at=int(time.time()) + 60))
    cache = store.cache()
    assert cache.verify(key) == record
    assert cache.verify(key, now=time.time() + 120) is None
    assert cache.verify("not-a-key") is None


def test_commits_to_other_tables_leave_the_cache_alone(tmp_path: Path) -> None:
    """A limited key's request commits to the database (its rate window): the key is not read again for it."""
    db = tmp_path / "cfai.db"
    store = KeyStore(db)
    key, record = store.create("a", KeyPolicy(rpm=5))
    cache = store.cache()
    assert cache.verify(key) == record
    with sqlite3.connect(db) as conn:  # a change no trigger sees (only a test goes behind cfai's back)...
        conn.execute("DROP TRIGGER api_keys_epoch_update")
        conn.execute("UPDATE api_keys SET rpm = 7 WHERE id = ?", (record.id,))
    with sqlite3.connect(db) as conn:  # ... and a commit elsewhere, as the rate limiter makes
        conn.execute("CREATE TABLE elsewhere (x)")
    assert cache.verify(key) == record  # still the record from memory: rpm 5
    other = KeyStore(db)
    other.create("b")  # a change to the keys: read again
    verified = cache.verify(key)
    assert verified is not None and verified.policy.rpm == 7
    cache.close()


def test_through_the_hot_paths_connection_its_own_commits_are_not_changes(tmp_path: Path) -> None:
    """Given the server's HotPath, the cache reads through its loop connection: the rate limits' commits made
    there do not make it read the keys' epoch again, and a change by any other connection still counts at once."""
    from cfai_cli.store.hot import HotPath
    from cfai_cli.store.limits import RateLimiter

    db = tmp_path / "cfai.db"
    hot = HotPath(db)
    store = KeyStore(db, hot=hot)
    key, record = store.create("a", KeyPolicy(rpm=5))
    cache = store.cache()
    assert cache.verify(key) == record
    assert cache.verify(key) == record
    limiter = RateLimiter(db, hot)
    assert asyncio.run(limiter.admit(record.id, record.policy, now=time.time())).allowed  # its table made
    assert cache.verify(key) == record
    statements: list[str] = []
    lent = hot.connections.lend()
    assert lent is not None
    lent.set_trace_callback(statements.append)
    hot.connections.give_back()
    for _ in range(3):  # an admission committed on the hot path's connection, then the next request's lookup
        assert asyncio.run(limiter.admit(record.id, record.policy, now=time.time())).allowed
        statements.clear()
        assert cache.verify(key) == record
        assert statements == ["PRAGMA data_version"]  # read on the loop's connection, and nothing changed
    assert store.revoke(record.id)  # another connection's commit: read again at once
    assert cache.verify(key) is None
    # The loop's connection busy (another thread's transaction): the cache's own connection, as exact.
    key2, record2 = store.create("b")
    assert hot.connections.lend() is not None
    try:
        assert cache.verify(key2) == record2
        assert store.revoke(record2.id)
        assert cache.verify(key2) is None
    finally:
        hot.connections.give_back()
    cache.close()
    hot.close()
