"""`[coordination] url`: two proxy apps on two data directories share one key's rate limits through a real Redis
(tests/infra), exactly under concurrency; a Redis that goes away mid-test is refused (closed) or admitted on the
replica's own limits with one warning (open)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from cfai_cli.core.coordination import CoordinationConfig, OnFailure
from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings, load_settings
from cfai_cli.store.keys import KeyPolicy, KeyStore
from tests.infra.servers import RedisServer
from tests.openai_schema import validate

pytestmark = pytest.mark.anyio
CHAT = {"model": "@cf/meta/llama-3.1-8b-instruct", "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 8}


def _settings(home: Path, url: str, on_failure: OnFailure = "closed") -> Settings:
    base = load_settings({"timeout": 5}, environ={"CFAI_HOME": str(home)}).as_offline()
    return replace(base, coordination=CoordinationConfig(url=url, on_failure=on_failure))


def _mint_in_both(first: Settings, second: Settings, **policy: int) -> dict[str, str]:
    """One key in both replicas' key stores: minted in the first, its database copied to the second."""
    key, _ = KeyStore(first.database).create("shared", KeyPolicy(**policy))  # type: ignore[arg-type]
    second.data_dir.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(first.database) as source, sqlite3.connect(second.database) as target:
        source.backup(target)
    return {"Authorization": f"Bearer {key}"}


@asynccontextmanager
async def _replicas(*settings: Settings) -> AsyncIterator[list[httpx.AsyncClient]]:
    async with AsyncExitStack() as stack:
        clients = []
        for one in settings:
            app = create_app(one)
            await stack.enter_async_context(app.router.lifespan_context(app))
            clients.append(await stack.enter_async_context(httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://proxy.test")))
        yield clients



@pytest.mark.usefixtures("patient_redis")
async def test_two_replicas_admit_exactly_the_limit_between_them(tmp_path: Path, redis_server: RedisServer) -> None:
    one, two = _settings(tmp_path / "a", redis_server.url), _settings(tmp_path / "b", redis_server.url)
    headers = _mint_in_both(one, two, rpm=10)
    async with _replicas(one, two) as clients:
        answers = await asyncio.gather(*(clients[i % 2].post("/v1/chat/completions", json=CHAT, headers=headers)
                                         for i in range(40)))
    served = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    assert len(served) == 10 and len(refused) == 30, sorted(a.status_code for a in answers)
    assert {i % 2 for i, a in enumerate(answers) if a.status_code == 200} == {0, 1}  # both replicas served some
    assert refused[0].json()["error"]["code"] == "rate_limit_exceeded"
    assert refused[0].headers["x-ratelimit-remaining-requests"] == "0"
    assert sorted(int(a.headers["x-ratelimit-remaining-requests"]) for a in served) == list(range(10))


async def test_without_coordination_each_replica_counts_alone(tmp_path: Path) -> None:
    """The control: the same two data dirs without Redis admit the limit on each."""
    one = load_settings({"timeout": 5}, environ={"CFAI_HOME": str(tmp_path / "a")}).as_offline()
    two = load_settings({"timeout": 5}, environ={"CFAI_HOME": str(tmp_path / "b")}).as_offline()
    headers = _mint_in_both(one, two, rpm=3)
    async with _replicas(one, two) as clients:
        answers = [await clients[i % 2].post("/v1/chat/completions", json=CHAT, headers=headers) for i in range(8)]
    assert sum(a.status_code == 200 for a in answers) == 6


async def test_redis_gone_fails_closed_with_a_503_naming_the_host(tmp_path: Path,
                                                                  private_redis: RedisServer) -> None:
    url = private_redis.url.replace("redis://", "redis://:s3cret-pass@")  # a password never appears in the answer
    settings = _settings(tmp_path, url)
    headers = _mint_in_both(settings, _settings(tmp_path / "unused", url), rpm=5)
    async with _replicas(settings) as (client,):
        before = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
        private_redis.process.stop()
        after = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
        listing = await client.get("/v1/models", headers=headers)
    assert before.status_code == 200, before.text
    assert after.status_code == 503, after.text
    body = after.json()
    validate(body, "ErrorResponse")
    assert body["error"]["code"] == "coordination_unavailable"
    assert f"127.0.0.1:{private_redis.port}" in body["error"]["message"]
    assert "s3cret" not in after.text and after.headers["retry-after"] == "1"
    assert listing.status_code == 503  # every limited request of the key, not only chat


async def test_redis_gone_fails_open_on_the_local_limiter_with_one_warning(
        tmp_path: Path, private_redis: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    settings = _settings(tmp_path, private_redis.url, on_failure="open")
    headers = _mint_in_both(settings, _settings(tmp_path / "unused", private_redis.url), rpm=3)
    async with _replicas(settings) as (client,):
        first = await client.post("/v1/chat/completions", json=CHAT, headers=headers)  # counted in Redis only
        private_redis.process.stop()
        with caplog.at_level(logging.WARNING, logger="cfai.coordination"):
            answers = [await client.post("/v1/chat/completions", json=CHAT, headers=headers) for _ in range(5)]
    assert first.status_code == 200
    # the replica's own SQLite limiter takes over: 3 a minute there (the request Redis counted is not in it)
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    warnings = [r for r in caplog.records if "COORDINATION UNAVAILABLE" in r.getMessage()]
    assert len(warnings) == 1 and f"127.0.0.1:{private_redis.port}" in warnings[0].getMessage()
