"""Proxy keys: format, hashed storage (the key never touches disk), private files, revocation."""

from __future__ import annotations

import re
import stat
from pathlib import Path

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


def test_revoke(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "cfai.db")
    key, record = store.create("temp")
    assert store.count_active() == 1
    assert store.revoke(record.id)
    assert not store.revoke(record.id)
    assert store.verify(key) is None
    assert store.count_active() == 0
    assert store.list()[0].revoked_at is not None
