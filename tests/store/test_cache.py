"""The response cache's table: tenants, expiry, the entry and byte bounds, pruning and clearing."""

from __future__ import annotations

from pathlib import Path

from cfai_cli.store.cache import Bounds, CacheStore

NOW = 1_900_000_000.0
WIDE = Bounds(ttl=100, max_entries=1000, max_bytes=10**9)


def test_an_entry_is_read_by_its_tenant_until_it_expires(database: Path | str) -> None:
    store = CacheStore(database)
    store.put("k1", b'{"a":1}', tenant="key_a", kind="chat", model="m", now=NOW, bounds=WIDE)
    found = store.get("k1", tenant="key_a", now=NOW + 99)
    assert found is not None and found.body == b'{"a":1}' and found.model == "m"
    assert store.get("k1", tenant="key_b", now=NOW) is None  # the key alone is not enough
    assert store.get("k1", tenant="key_a", now=NOW + 100) is None  # expired, even before it is deleted
    assert store.stats(now=NOW + 100).expired == 1
    assert store.prune(now=NOW + 100) == 1 and store.stats(now=NOW).entries == 0


def test_writes_keep_the_table_within_its_bounds_oldest_first(database: Path | str) -> None:
    store = CacheStore(database)
    bounds = Bounds(ttl=1000, max_entries=3, max_bytes=25)
    for i in range(5):
        store.put(f"k{i}", b"x" * 5, tenant="t", kind="chat", model=None, now=NOW + i, bounds=bounds)
    assert [store.get(f"k{i}", tenant="t", now=NOW + 10) is not None for i in range(5)] == [False, False, True, True,
                                                                                           True]
    store.put("big", b"y" * 20, tenant="t", kind="chat", model=None, now=NOW + 6, bounds=bounds)
    stats = store.stats(now=NOW + 10)
    assert stats.bytes <= 25 and stats.entries == 2  # k4 (5 bytes) and big (20 bytes)
    store.put("later", b"z", tenant="t", kind="chat", model=None, now=NOW + 2000, bounds=bounds)
    assert store.stats(now=NOW + 2000) == type(stats)(entries=1, bytes=1, expired=0)  # expired ones went on write


def test_clear_all_or_some_tenants(database: Path | str) -> None:
    store = CacheStore(database)
    assert store.clear() == 0 and store.stats(now=NOW).entries == 0  # no database yet: nothing made
    for i, tenant in enumerate(("a", "a", "b", "")):
        store.put(f"k{i}", b"1", tenant=tenant, kind="chat", model=None, now=NOW, bounds=WIDE)
    assert store.clear(tenants=["a"]) == 2 and store.stats(now=NOW).entries == 2
    assert store.clear() == 2
