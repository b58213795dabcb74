"""`[coordination] url` and budgets: two proxy apps on two data directories hold and settle one key's budget in a
real Redis (tests/infra), exactly under concurrency; Redis losing its keys (FLUSHALL) keeps what was spent (the
durable ledger reseeds it); a Redis that goes away is refused (closed) or judged on the replica's own ledger
with a warning (open)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from cfai_cli.core.coordination import CoordinationConfig, OnFailure
from cfai_cli.core.store_url import StoreConfig
from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings, load_settings
from cfai_cli.store.budgets import BudgetLedger, SpendStore
from cfai_cli.store.keys import KeyPolicy, KeyStore
from cfai_cli.store.redis_budgets import RedisBudgets
from cfai_cli.store.redis_limits import connect
from tests.infra.servers import PostgresServer, RedisServer
from tests.openai_schema import validate
from tests.server.test_budgets import CHAT, COST, Billing, refusal

pytestmark = pytest.mark.anyio


def _settings(home: Path, url: str, on_failure: OnFailure = "closed") -> Settings:
    base = load_settings({"account_id": "0123abcd", "api_token": "cf-secret-token-value", "timeout": 5},
                         environ={"CFAI_HOME": str(home)})
    return replace(base, coordination=CoordinationConfig(url=url, on_failure=on_failure))


def _mint_in_all(settings: list[Settings], **policies: KeyPolicy) -> dict[str, tuple[str, str]]:
    """Keys minted in the first replica's store, its database copied to the others: name -> (key, key id)."""
    store = KeyStore(settings[0].database)
    keys = {}
    for name, policy in policies.items():
        key, record = store.create(name, policy)
        keys[name] = (key, record.id)
    for other in settings[1:]:
        other.data_dir.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(settings[0].database) as source, sqlite3.connect(other.database) as target:
            source.backup(target)
    return keys


def _auth(key: tuple[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {key[0]}"}


@asynccontextmanager
async def _replicas(billing: Billing, *settings: Settings) -> AsyncIterator[list[httpx.AsyncClient]]:
    async with AsyncExitStack() as stack:
        clients = []
        for one in settings:
            app = create_app(one, transport=httpx.MockTransport(billing))
            await stack.enter_async_context(app.router.lifespan_context(app))
            clients.append(await stack.enter_async_context(httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://proxy.test")))
        yield clients


@asynccontextmanager
async def _measuring(url: str, tmp_path: Path) -> AsyncIterator[RedisBudgets]:
    """Reads what Redis says a key spent and holds (the apps' default prefix)."""
    durable = BudgetLedger(tmp_path / "measure.db")
    budgets = RedisBudgets(connect(url), durable)
    try:
        yield budgets
    finally:
        await budgets.close()
        durable.hot.close()


@pytest.fixture
async def measure(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[RedisBudgets]:
    async with _measuring(redis_server.url, tmp_path) as budgets:
        yield budgets



@pytest.mark.usefixtures("patient_redis")
async def test_two_replicas_serve_exactly_the_budget_between_them(tmp_path: Path, redis_server: RedisServer,
                                                                  measure: RedisBudgets) -> None:
    one, two = _settings(tmp_path / "a", redis_server.url), _settings(tmp_path / "b", redis_server.url)
    keys = _mint_in_all([one, two], warm=KeyPolicy(budget_neurons_per_day=1e9),
                        ten=KeyPolicy(budget_neurons_per_day=10 * COST))
    billing = Billing()
    async with _replicas(billing, one, two) as clients:
        # One settled request of the model (on the first replica): its mean cost per call is known in Redis.
        assert (await clients[0].post("/v1/chat/completions", json=CHAT, headers=_auth(keys["warm"]))).is_success
        billing.gate = asyncio.Event()  # the admitted requests stay in flight until all forty are judged
        tasks = [asyncio.create_task(clients[i % 2].post("/v1/chat/completions", json=CHAT,
                                                         headers=_auth(keys["ten"]))) for i in range(40)]
        for _ in range(500):
            if billing.waiting == 10 and sum(t.done() for t in tasks) == 30:
                break
            await asyncio.sleep(0.02)
        held = await measure.measure(keys["ten"][1], now=time.time())
        billing.gate.set()
        answers = await asyncio.gather(*tasks)
    served = [i for i, a in enumerate(answers) if a.status_code == 200]
    assert len(served) == 10 and {i % 2 for i in served} == {0, 1}, sorted(a.status_code for a in answers)
    assert held == (0, 0, 10 * COST)  # while in flight: nothing spent, ten calls held
    for answer in answers:
        if answer.status_code != 200:
            assert any(words in refusal(answer)["message"]
                       for words in ("does not fit", "used its budget", "Nothing is left"))
    assert billing.calls == 11  # the warm-up and the ten admitted: refused requests never reach upstream
    assert await measure.measure(keys["ten"][1], now=time.time()) == (10 * COST, 10 * COST, 0)  # nothing held
    # The durable ledger (here each replica's own SQLite file standing in for the shared store) has every cost.
    day = sum(BudgetLedger(s.database).spent(keys["ten"][1], now=time.time())[0] for s in (one, two))
    assert day == 10 * COST


async def test_spend_survives_redis_losing_its_keys(tmp_path: Path, private_redis: RedisServer) -> None:
    settings = _settings(tmp_path, private_redis.url)
    keys = _mint_in_all([settings], three=KeyPolicy(budget_neurons_per_day=3 * COST))
    billing = Billing()
    async with _replicas(billing, settings) as (client,), _measuring(private_redis.url, tmp_path) as measure:
        for _ in range(2):
            assert (await client.post("/v1/chat/completions", json=CHAT, headers=_auth(keys["three"]))).is_success
        await measure.client.flushall()  # Redis restarted empty
        assert (await client.post("/v1/chat/completions", json=CHAT, headers=_auth(keys["three"]))).is_success
        error = refusal(await client.post("/v1/chat/completions", json=CHAT, headers=_auth(keys["three"])))
        assert await measure.measure(keys["three"][1], now=time.time()) == (3 * COST, 3 * COST, 0)
    assert "30.00 spent today" in error["message"]  # reseeded from the durable ledger, not counted from zero
    assert billing.calls == 3


async def test_redis_gone_fails_closed_for_a_budgeted_key(tmp_path: Path, private_redis: RedisServer) -> None:
    settings = _settings(tmp_path, private_redis.url)
    keys = _mint_in_all([settings], budgeted=KeyPolicy(budget_neurons_per_day=1e6))
    async with _replicas(Billing(), settings) as (client,):
        before = await client.post("/v1/chat/completions", json=CHAT, headers=_auth(keys["budgeted"]))
        private_redis.process.stop()
        after = await client.post("/v1/chat/completions", json=CHAT, headers=_auth(keys["budgeted"]))
    assert before.status_code == 200, before.text
    assert after.status_code == 503, after.text
    validate(after.json(), "ErrorResponse")
    error = after.json()["error"]
    assert error["code"] == "coordination_unavailable" and error["message"].startswith("Budgets cannot be checked")
    assert f"127.0.0.1:{private_redis.port}" in error["message"]


async def test_redis_gone_fails_open_on_the_replicas_own_ledger_with_a_warning(
        tmp_path: Path, private_redis: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    settings = _settings(tmp_path, private_redis.url, on_failure="open")
    keys = _mint_in_all([settings], three=KeyPolicy(budget_neurons_per_day=3 * COST))
    billing = Billing()
    async with _replicas(billing, settings) as (client,):
        first = await client.post("/v1/chat/completions", json=CHAT, headers=_auth(keys["three"]))
        private_redis.process.stop()
        with caplog.at_level(logging.WARNING, logger="cfai.coordination"):
            answers = [await client.post("/v1/chat/completions", json=CHAT, headers=_auth(keys["three"]))
                       for _ in range(3)]
    assert first.status_code == 200
    # the durable ledger has the first request's cost (the settle writes it too): two more fit, the third not
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert "30.00 spent today" in refusal(answers[2])["message"]
    assert BudgetLedger(settings.database).spent(keys["three"][1], now=time.time())[0] == 3 * COST
    warnings = [r for r in caplog.records if "COORDINATION UNAVAILABLE" in r.getMessage()]
    assert len(warnings) == 1 and f"127.0.0.1:{private_redis.port}" in warnings[0].getMessage()


async def test_failing_open_on_a_shared_store_still_counts_every_replicas_spend(
        tmp_path: Path, private_redis: RedisServer, postgres_server: PostgresServer) -> None:
    """With a PostgreSQL store the durable spend is there, not in this host's SQLite file: a replica judging a
    budget alone while Redis is away must still count it, or each replica could spend the whole budget again."""
    store = postgres_server.create_database(f"open_{uuid.uuid4().hex[:12]}")
    settings = replace(_settings(tmp_path, private_redis.url, on_failure="open"), store=StoreConfig(url=store))
    secret, record = KeyStore(settings.storage).create("ten", KeyPolicy(budget_neurons_per_day=10 * COST))
    key = (secret, record.id)
    shared = SpendStore(settings.storage)
    billing = Billing()
    async with _replicas(billing, settings) as (client,):
        first = await client.post("/v1/chat/completions", json=CHAT, headers=_auth(key))
        assert shared.spent(key[1], now=time.time())[0] == COST  # the settle went to the shared record
        shared.add(key[1], 9 * COST, now=time.time())  # what the other replicas settled since
        private_redis.process.stop()
        alone = await client.post("/v1/chat/completions", json=CHAT, headers=_auth(key))
    assert first.status_code == 200
    assert alone.status_code == 429 and "100.00 spent today" in refusal(alone)["message"]
