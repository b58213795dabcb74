"""`[coordination] url` beyond rate limits: the router's rests and the response cache shared by two proxy apps
(replicas, each with its own data directory and fake upstreams) through a real Redis (tests/infra); a Redis that
goes away costs neither (fail open: the replica's own cooldowns, cache misses) and never fails a request."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from cfai_cli.core.cache import CacheConfig
from cfai_cli.core.cooldowns import seconds_to_utc_midnight
from cfai_cli.core.coordination import CoordinationConfig
from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings, load_settings
from cfai_cli.store.keys import SCOPES, KeyPolicy, KeyStore
from tests.fake_upstreams import FakeUpstreams
from tests.fake_workers import error_envelope, fixed, native_text
from tests.infra.servers import RedisServer

pytestmark = pytest.mark.anyio

MAIN, BACKUP = "0123abcd", "feed0000"
MODEL = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
CONFIG = f"""
[routing]
cooldown_seconds = 30

[upstreams.backup]
type = "cloudflare"
account_id = "{BACKUP}"
api_token_env = "BACKUP_TOKEN"

[routes]
only-main = ["cloudflare:{MODEL}"]
"""
QUOTA = fixed(429, error_envelope(4006, "you have used up your daily free allocation of 10,000 neurons"))
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "temperature": 0}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"



def replica_settings(home: Path, url: str | None, **cache: Any) -> Settings:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(CONFIG)
    base = load_settings({"account_id": MAIN, "api_token": "cf-main-token", "timeout": 5, "max_retries": 0},
                         environ={"CFAI_HOME": str(home), "BACKUP_TOKEN": "backup-token"})
    return replace(base, coordination=CoordinationConfig(url=url, on_failure="open"),
                   cache=CacheConfig(enabled=True, **cache))


@dataclass
class Replica:
    client: httpx.AsyncClient
    up: FakeUpstreams
    app: Any

    async def chat(self, key: str, **extra: Any) -> httpx.Response:
        return await self.client.post("/v1/chat/completions", json={**CHAT, **extra},
                                      headers={"Authorization": f"Bearer {key}"})


def fakes(main: Callable[..., Any] = QUOTA) -> FakeUpstreams:
    up = FakeUpstreams()
    up.account(MAIN).models[MODEL] = main
    up.account(BACKUP).models[MODEL] = native_text(f"hello from {BACKUP}")
    return up


class Clock:
    now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def replicas(*settings: Settings, clock: Clock) -> AsyncIterator[list[Replica]]:
    async with AsyncExitStack() as stack:
        found = []
        for one in settings:
            up = fakes()
            app = create_app(one, transport=up.transport())
            await stack.enter_async_context(app.router.lifespan_context(app))
            app.state.ctx.router.clock = clock
            client = await stack.enter_async_context(httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://proxy.test"))
            found.append(Replica(client, up, app))
        yield found


def mint(first: Settings, *others: Settings, name: str = "shared", cache: bool = True) -> str:
    """An admin key in every replica's key store: minted in the first, its database copied to the others."""
    key, _ = KeyStore(first.database).create(name, KeyPolicy(scopes=frozenset(SCOPES), cache=cache))
    for other in others:
        other.data_dir.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(first.database) as source, sqlite3.connect(other.database) as target:
            source.backup(target)
    return key


def cloudflare_keys(health: dict[str, Any]) -> dict[str, Any]:
    return next(u for u in health["upstreams"] if u["name"] == "cloudflare")["keys"][0]  # type: ignore[no-any-return]


# ---- router cooldowns ---------------------------------------------------------------------------------


async def test_a_daily_quota_learned_on_one_replica_rests_the_account_on_the_other(tmp_path: Path,
                                                                                   private_redis: RedisServer) -> None:
    one, two = (replica_settings(tmp_path / name, private_redis.url) for name in ("a", "b"))
    key = mint(one, two, cache=False)
    clock = Clock()
    async with replicas(one, two, clock=clock) as (a, b):
        first = await a.chat(key)
        assert first.status_code == 200 and first.headers["x-cfai-upstream"] == "backup", first.text
        assert a.up.who() == [f"{MAIN}/cf-main-token", f"{BACKUP}/backup-token"]
        answer = await b.chat(key)
        assert answer.status_code == 200 and answer.headers["x-cfai-upstream"] == "backup"
        assert b.up.who() == [f"{BACKUP}/backup-token"]  # B never asked the account A found out of quota
        health = (await b.client.get("/health?detail=1", headers={"Authorization": f"Bearer {key}"})).json()
        main = cloudflare_keys(health)
        assert main["state"] == "cooling_down" and "all models" in main["cooling_down_until"]
        assert main["last_error"]["kind"] == "quota" and "daily free allocation" in main["last_error"]["message"]
        assert (await b.client.get("/health")).json()["upstreams"][0] == {"name": "cloudflare", "state": "cooling_down"}
        # Past 00:00 UTC the quota is back: both replicas use the first account again.
        clock.now += seconds_to_utc_midnight(clock.now) + 1
        for replica in (a, b):
            replica.up.account(MAIN).models[MODEL] = native_text(f"hello from {MAIN}")
            replica.up.calls.clear()
            again = await replica.chat(key)
            assert again.headers["x-cfai-upstream"] == "cloudflare", again.text
            assert replica.up.who() == [f"{MAIN}/cf-main-token"]
        assert cloudflare_keys((await b.client.get(
            "/health?detail=1", headers={"Authorization": f"Bearer {key}"})).json())["state"] == "ok"


async def test_an_answer_on_one_replica_ends_a_shared_rest_for_all(tmp_path: Path, private_redis: RedisServer) -> None:
    one, two = (replica_settings(tmp_path / name, private_redis.url) for name in ("a", "b"))
    key = mint(one, two, cache=False)
    clock = Clock()
    async with replicas(one, two, clock=clock) as (a, b):
        a.up.account(MAIN).models[MODEL] = fixed(500, error_envelope(3043, "Internal server error"))
        await a.chat(key)  # rests MODEL on the main account for 30 s, for both
        a.up.account(MAIN).models[MODEL] = native_text("main is back")
        clock.now += 5
        # A route with the main account alone tries it however it rests: its answer ends the rest everywhere.
        assert (await a.chat(key, model="only-main")).headers["x-cfai-upstream"] == "cloudflare"
        b.up.account(MAIN).models[MODEL] = native_text("main is back")
        answer = await b.chat(key)
    assert answer.headers["x-cfai-upstream"] == "cloudflare" and b.up.who() == [f"{MAIN}/cf-main-token"]


async def test_without_coordination_each_replica_learns_alone(tmp_path: Path) -> None:
    """The control: the same two replicas without Redis each ask the account out of quota once."""
    one, two = (replica_settings(tmp_path / name, None) for name in ("a", "b"))
    key = mint(one, two, cache=False)
    async with replicas(one, two, clock=Clock()) as (a, b):
        await a.chat(key)
        await b.chat(key)
    assert b.up.who() == [f"{MAIN}/cf-main-token", f"{BACKUP}/backup-token"]


async def test_redis_gone_failover_still_works_on_the_replicas_own_cooldowns(
        tmp_path: Path, private_redis: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    settings = replica_settings(tmp_path / "a", private_redis.url)
    key = mint(settings, cache=False)
    async with replicas(settings, clock=Clock()) as (a,):
        private_redis.process.stop()
        with caplog.at_level(logging.WARNING, logger="cfai.coordination"):
            answers = [await a.chat(key) for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert a.up.who() == [f"{MAIN}/cf-main-token"] + [f"{BACKUP}/backup-token"] * 3  # rested locally
    assert any("router cooldowns" in r.getMessage() for r in caplog.records)


# ---- the response cache -------------------------------------------------------------------------------


async def test_an_answer_cached_on_one_replica_is_a_hit_on_the_other(tmp_path: Path,
                                                                      private_redis: RedisServer) -> None:
    one, two = (replica_settings(tmp_path / name, private_redis.url) for name in ("a", "b"))
    key = mint(one, two)
    other = mint(one, two, name="other")
    async with replicas(one, two, clock=Clock()) as (a, b):
        for replica in (a, b):
            replica.up.account(MAIN).models[MODEL] = native_text("Paris")
        miss = await a.chat(key)
        hit = await b.chat(key)
        streamed = await b.client.post("/v1/chat/completions", json={**CHAT, "stream": True},
                                       headers={"Authorization": f"Bearer {key}"})
        elsewhere = await b.chat(other)  # another key, same request: its own tenant, a miss
    assert miss.headers["x-cfai-cache"] == "miss" and len(a.up.who()) == 1
    assert hit.status_code == 200 and hit.headers["x-cfai-cache"] == "hit"
    assert hit.json()["choices"] == miss.json()["choices"] and hit.json()["id"] != miss.json()["id"]
    assert streamed.headers["x-cfai-cache"] == "hit" and "Paris" in streamed.text
    assert elsewhere.headers["x-cfai-cache"] == "miss"
    assert b.up.who() == [f"{MAIN}/cf-main-token"]  # only the other tenant's miss reached an upstream


async def test_cached_answers_expire_with_their_ttl(tmp_path: Path, private_redis: RedisServer) -> None:
    one, two = (replica_settings(tmp_path / name, private_redis.url, ttl=0.3) for name in ("a", "b"))
    key = mint(one, two)
    async with replicas(one, two, clock=Clock()) as (a, b):
        await a.chat(key)
        assert (await b.chat(key)).headers["x-cfai-cache"] == "hit"
        await asyncio.sleep(0.5)
        late = await b.chat(key)
    assert late.status_code == 200 and late.headers["x-cfai-cache"] == "miss"


async def test_a_big_answer_is_served_but_not_stored(tmp_path: Path, private_redis: RedisServer) -> None:
    one, two = (replica_settings(tmp_path / name, private_redis.url, max_entry_bytes=200) for name in ("a", "b"))
    key = mint(one, two)
    async with replicas(one, two, clock=Clock()) as (a, b):
        for replica in (a, b):
            replica.up.account(MAIN).models[MODEL] = native_text("word " * 100)
        await a.chat(key)
        second = await b.chat(key)
    assert second.headers["x-cfai-cache"] == "miss" and len(b.up.who()) == 1


async def test_redis_gone_the_cache_misses_and_requests_are_still_served(
        tmp_path: Path, private_redis: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    settings = replica_settings(tmp_path / "a", private_redis.url)
    key = mint(settings)
    async with replicas(settings, clock=Clock()) as (a,):
        a.up.account(MAIN).models[MODEL] = native_text("Paris")
        assert (await a.chat(key)).headers["x-cfai-cache"] == "miss"
        assert (await a.chat(key)).headers["x-cfai-cache"] == "hit"
        private_redis.process.stop()
        with caplog.at_level(logging.WARNING, logger="cfai.coordination"):
            answers = [await a.chat(key) for _ in range(2)]
    assert [(r.status_code, r.headers["x-cfai-cache"]) for r in answers] == [(200, "miss"), (200, "miss")]
    assert len(a.up.who()) == 3
    assert any("the response cache" in r.getMessage() for r in caplog.records)
