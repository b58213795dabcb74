"""`cfai cache stats|clear` and `cfai keygen --cache`, through Typer's runner."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from cfai_cli.settings import load_settings
from cfai_cli.store.cache import Bounds, CacheStore
from cfai_cli.store.keys import KeyStore
from cfai_cli.store.redis_cache import RedisCache, run_on
from cfai_cli.store.redis_limits import connect
from cfai_cli.store.usage import UsageLog, UsageRow
from tests.cli.conftest import Invoke
from tests.infra.servers import Missing, start_redis

BOUNDS = Bounds(ttl=3600, max_entries=100, max_bytes=10**6)


def row(cache: str | None, age: float = 60) -> UsageRow:
    return UsageRow(ts=time.time() - age, key_id="k", route="chat/completions", model="m", upstream_model="m",
                    status=200, prompt_tokens=0, completion_tokens=0, latency_ms=1.0, bytes_in=1, bytes_out=1,
                    error_code=None, cache=cache)


def test_stats_counts_entries_and_the_usage_logs_hits(cli: Invoke) -> None:
    empty = cli("cache", "stats", "--json")
    assert empty.exit_code == 0 and json.loads(empty.stdout)["entries"] == 0
    database = load_settings().database
    store = CacheStore(database)
    now = time.time()
    store.put("k1", b"12345", tenant="t", kind="chat", model=None, now=now, bounds=BOUNDS)
    store.put("k2", b"123", tenant="t", kind="chat", model=None, now=now - 7200, bounds=BOUNDS)  # expired
    UsageLog(database).write([row("hit"), row("hit"), row("hit"), row("miss"), row("bypass"), row(None),
                              row("hit", age=3 * 86400)])
    stats = json.loads(cli("cache", "stats", "--json").stdout)
    assert stats == {"entries": 1, "bytes": 5, "expired": 1, "hits": 4, "misses": 1, "refreshes": 0, "bypassed": 1,
                     "hit_rate": 0.8}
    recent = json.loads(cli("cache", "stats", "--since", "1d", "--json").stdout)
    assert recent["hits"] == 3 and recent["hit_rate"] == 0.75
    table = cli("cache", "stats")
    assert table.exit_code == 0 and "80.0%" in table.stdout
    assert cli("cache", "stats", "--since", "soon").exit_code == 2


def test_clear_everything_or_one_keys_answers(cli: Invoke) -> None:
    database = load_settings().database
    keys = KeyStore(database)
    _, laptop = keys.create("laptop")
    _, ci = keys.create("ci")
    store = CacheStore(database)
    for i, tenant in enumerate((laptop.id, laptop.id, ci.id, "")):
        store.put(f"k{i}", b"{}", tenant=tenant, kind="chat", model=None, now=time.time(), bounds=BOUNDS)
    one = cli("cache", "clear", "--key", "laptop")
    assert one.exit_code == 0 and one.stdout == "deleted 2 cached answers\n"
    by_id = cli("cache", "clear", "--key", ci.id, "--json")
    assert json.loads(by_id.stdout) == {"deleted": 1}
    unknown = cli("cache", "clear", "--key", "nobody")
    assert unknown.exit_code == 2 and "no key named 'nobody'" in unknown.stderr
    assert json.loads(cli("cache", "clear", "--json").stdout) == {"deleted": 1}  # the shared tenant's, too


def test_keygen_cache_flag(cli: Invoke) -> None:
    made = cli("keygen", "--name", "cached", "--cache")
    assert made.exit_code == 0 and "response cache" in made.stderr
    plain = cli("keygen", "--name", "plain")
    assert "response cache" not in plain.stderr
    listed = {k["name"]: k["cache"] for k in json.loads(cli("keys", "list", "--json").stdout)}
    assert listed == {"cached": True, "plain": False}
    record = KeyStore(load_settings().database).verify(made.stdout.strip())
    assert record is not None and record.policy.cache


def test_stats_and_clear_work_on_the_redis_cache_when_coordination_points_there(cli: Invoke) -> None:
    """[coordination] url: the server's cached answers are in Redis, and so are the commands' (a real Redis)."""
    try:
        redis = start_redis()
    except Missing as exc:
        pytest.skip(str(exc))
    try:
        keys = KeyStore(load_settings().database)
        _, laptop = keys.create("laptop")
        env = {"CFAI_COORDINATION_URL": redis.url}

        async def fill(cache: RedisCache) -> None:
            for i, tenant in enumerate((laptop.id, laptop.id, "*", "")):  # "*": glob characters stay literal
                await cache.put(f"k{i}", b"12345", tenant=tenant, model="m", ttl=60)

        run_on(redis.url, fill)
        stats = json.loads(cli("cache", "stats", "--json", env=env).stdout)
        assert stats["entries"] == 4 and stats["bytes"] > 20
        assert json.loads(cli("cache", "stats", "--json").stdout)["entries"] == 0  # SQLite's, without the url
        one = cli("cache", "clear", "--key", "laptop", env=env)
        assert one.exit_code == 0 and one.stdout == "deleted 2 cached answers\n"
        assert json.loads(cli("cache", "clear", "--json", env=env).stdout) == {"deleted": 2}
        assert asyncio.run(_count(redis.url)) == 0
        redis.process.stop()
        down = cli("cache", "stats", env={"CFAI_COORDINATION_URL": redis.url.replace("//", "//:pw-secret@")})
        assert down.exit_code == 5 and f"127.0.0.1:{redis.port}" in down.stderr and "pw-secret" not in down.stderr
    finally:
        redis.process.stop()


async def _count(url: str) -> int:
    client = connect(url)
    try:
        return len([k async for k in client.scan_iter(match="cfai:cache:*")])
    finally:
        await client.aclose()
