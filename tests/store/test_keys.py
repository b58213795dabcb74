"""Proxy keys: format, hashed storage (the key never touches disk), private files, revocation."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from cfai_cli.store.keys import KeyStore, hash_key


def test_keys_are_random_256_bit_and_stored_only_as_hashes(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "data" / "cfai.db")
    key, record = store.create("laptop")
    other, _ = store.create("ci")
    assert re.fullmatch(r"sk-proj-[A-Za-z0-9_-]{43,}", key) and key != other
    raw = b"".join(p.read_bytes() for p in (tmp_path / "data").iterdir())
    assert key.encode() not in raw and key[8:].encode() not in raw
    assert hash_key(key).encode() in raw
    assert stat.S_IMODE((tmp_path / "data" / "cfai.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
    assert store.verify(key) == record
    assert store.verify(key + "x") is None and store.verify("sk-proj-") is None and store.verify("") is None


def test_revoke(database: Path | str) -> None:
    store = KeyStore(database)
    key, record = store.create("temp")
    assert store.count_active() == 1
    assert store.revoke(record.id)
    assert not store.revoke(record.id)
    assert store.verify(key) is None
    assert store.count_active() == 0
    assert store.list()[0].revoked_at is not None


def test_keys_made_by_an_older_cfai_keep_working(tmp_path: Path) -> None:
    import sqlite3

    from cfai_cli.store.keys import DEFAULT_SCOPES, new_key

    path = tmp_path / "cfai.db"
    key = new_key()
    with sqlite3.connect(path) as conn:  # the 0.1.0 schema, before key policies existed
        conn.execute("CREATE TABLE api_keys (id TEXT PRIMARY KEY, name TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, "
                     "hint TEXT NOT NULL, created_at INTEGER NOT NULL, revoked_at INTEGER)")
        conn.execute("INSERT INTO api_keys VALUES ('key_old', 'old', ?, 'sk-proj-x…y', 1, NULL)", (hash_key(key),))
    record = KeyStore(path).verify(key)
    assert record is not None and record.id == "key_old" and record.policy.scopes == DEFAULT_SCOPES
    assert record.policy.rpm is None and record.policy.models == ()


def test_two_revocations_cannot_both_pass_the_last_admin_check(database: Path | str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Each revocation checks that another admin key stays, then writes: two at once (two processes or
    replicas, each with its own connections) must not both pass, on SQLite (one writer) or PostgreSQL (the
    store's advisory lock)."""
    import threading
    import time

    from cfai_cli.errors import Conflict
    from cfai_cli.store import keys as keys_module
    from cfai_cli.store.keys import SCOPES, KeyPolicy
    from tests.databases import another

    admin = KeyPolicy(scopes=frozenset(SCOPES))
    _, first = KeyStore(database).create("admin 1", admin)
    _, second = KeyStore(database).create("admin 2", admin)
    real = keys_module._keep_an_admin

    def slow(*args: object) -> None:
        real(*args)  # type: ignore[arg-type]
        time.sleep(0.3)  # the other revocation's check would run here, before this one's write

    monkeypatch.setattr(keys_module, "_keep_an_admin", slow)
    outcomes: list[str] = []

    def revoke(key_id: str) -> None:
        db = another(database)
        try:
            outcomes.append("revoked" if KeyStore(db).revoke(key_id, keep_admin=True) else "none")
        except Conflict:
            outcomes.append("refused")
        finally:
            db.close()

    threads = [threading.Thread(target=revoke, args=(k.id,)) for k in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused", "revoked"]
    assert sum(1 for k in KeyStore(database).list() if k.revoked_at is None) == 1
