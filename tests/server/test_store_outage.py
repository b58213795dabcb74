"""PostgreSQL (and Redis) going away while the gateway runs, on private servers this file stops and starts again:
clear 503s instead of 500s or unchecked keys, the usage log and the budgets' settles kept and written when the
store is back, streams that outlive both restarts, and requests working again without restarting the app."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import anyio
import httpx
import pytest

from cfai_cli.core.coordination import CoordinationConfig
from cfai_cli.core.store_url import StoreConfig
from cfai_cli.errors import StoreUnavailable
from cfai_cli.server.app import create_app
from cfai_cli.server.recorder import UsageRecorder
from cfai_cli.settings import Settings, load_settings
from cfai_cli.store.budgets import SpendStore
from cfai_cli.store.keys import KeyPolicy, KeyStore
from cfai_cli.store.sql import forget
from cfai_cli.store.usage import UsageLog, UsageRow
from tests.infra.servers import PostgresServer, RedisServer
from tests.openai_schema import validate

pytestmark = pytest.mark.anyio
_NAMES = itertools.count()
CHAT = {"model": "@cf/meta/llama-3.1-8b-instruct", "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 8}



@pytest.fixture
def pg(private_postgres: PostgresServer) -> Iterator[str]:
    """A fresh database on the private server (up again if a test left it down)."""
    private_postgres.process.resume()
    url = private_postgres.create_database(f"outage_{os.getpid()}_{next(_NAMES)}")
    yield url
    private_postgres.process.resume()
    forget(url)



def _settings(home: Path, store: str, redis: str) -> Settings:
    base = load_settings({"timeout": 5}, environ={"CFAI_HOME": str(home)}).as_offline()
    return replace(base, store=StoreConfig(url=store), coordination=CoordinationConfig(url=redis))


@asynccontextmanager
async def _client(settings: Settings, key: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test",
            headers={"Authorization": f"Bearer {key}"}) as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


async def _until_ok(client: httpx.AsyncClient, seconds: float = 15.0) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        answer = await client.post("/v1/chat/completions", json=CHAT)
        if answer.status_code != 503 or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.2)


async def test_requests_get_a_clear_503_while_postgresql_is_down_and_work_again_after(
        tmp_path: Path, pg: str, private_postgres: PostgresServer, private_redis: RedisServer) -> None:
    settings = _settings(tmp_path, pg, private_redis.url)
    key, _ = KeyStore(pg).create("outage")
    async with _client(settings, key) as client:
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
        await anyio.to_thread.run_sync(private_postgres.process.halt)
        for presented in (key, "sk-proj-" + "x" * 43):  # the known key and an unknown one alike: never admitted
            started = time.monotonic()
            answer = await client.post("/v1/chat/completions", json=CHAT,
                                       headers={"Authorization": f"Bearer {presented}"})
            assert answer.status_code == 503, answer.text
            assert time.monotonic() - started < 8  # PostgresDatabase.WAIT, not psycopg_pool's 30 s
            error = answer.json()["error"]
            validate(answer.json(), "ErrorResponse")
            assert error["code"] == "store_unavailable" and error["type"] == "server_error"
            assert f"127.0.0.1:{private_postgres.port}" in error["message"] and "cfai@" not in error["message"]
            assert answer.headers.get("retry-after")
        health = (await client.get("/health")).json()
        assert health["store"]["status"] == "unavailable", health
        assert health["store"]["at"].startswith(f"127.0.0.1:{private_postgres.port}")
        await anyio.to_thread.run_sync(private_postgres.process.resume)
        again = await _until_ok(client)  # the same app: the pool reconnected on its own
        assert again.status_code == 200, again.text
        assert (await client.get("/health")).json()["store"]["status"] == "ok"


async def test_a_restarted_postgresql_costs_no_request(tmp_path: Path, pg: str, private_postgres: PostgresServer,
                                                      private_redis: RedisServer) -> None:
    """A restart between two requests: the pool's check finds its connections closed before a request meets them."""
    settings = _settings(tmp_path, pg, private_redis.url)
    key, _ = KeyStore(pg).create("restart")
    async with _client(settings, key) as client:
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
        await anyio.to_thread.run_sync(private_postgres.process.restart)
        answer = await client.post("/v1/chat/completions", json=CHAT)
        assert answer.status_code == 200, answer.text


def _row(n: int) -> UsageRow:
    return UsageRow(ts=time.time(), key_id=f"key_{n}", route="chat/completions", model="m", upstream_model="m",
                    status=200, prompt_tokens=n, completion_tokens=1, latency_ms=1.0, bytes_in=1, bytes_out=1,
                    error_code=None, upstream="workers-ai", cache=None, neurons=1.0, neurons_estimated=False,
                    cost_usd=None, account="acct")


async def test_the_usage_recorder_keeps_its_rows_while_postgresql_is_down(
        pg: str, private_postgres: PostgresServer, caplog: pytest.LogCaptureFixture) -> None:
    usage = UsageLog(pg)
    recorder = UsageRecorder(usage, limit=4)
    recorder.add(_row(0))
    assert await recorder.flush()
    await anyio.to_thread.run_sync(private_postgres.process.halt)
    for n in range(1, 4):
        recorder.add(_row(n))
    assert not await recorder.flush()  # kept, and the meter still counts their neurons
    assert recorder.pending == {"acct": 3.0} and recorder.lost == 0
    for n in range(4, 7):
        recorder.add(_row(n))  # past the bound: the oldest go, counted and logged
    assert not await recorder.flush()
    assert recorder.lost == 2 and "dropped the 1 oldest" in caplog.text
    await anyio.to_thread.run_sync(private_postgres.process.resume)
    deadline = time.monotonic() + 15
    while not await recorder.flush():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    written = sorted(r.prompt_tokens for r in usage.rows(since=0))
    assert written == [0, 3, 4, 5, 6] and recorder.pending == {}
    # A row the database refuses (out of BIGINT's range) is dropped, not retried before every later row.
    recorder.add(replace(_row(7), completion_tokens=2**70))
    assert await recorder.flush() and recorder.lost == 3
    recorder.add(_row(8))
    assert await recorder.flush()
    assert max(r.prompt_tokens for r in usage.rows(since=0)) == 8


async def test_a_budget_settle_postgresql_cannot_take_is_kept_and_written_later(
        pg: str, private_postgres: PostgresServer) -> None:
    spend = SpendStore(pg)
    now = time.time()
    await spend.settle(None, "key_a", 5.0, model="m", calls=1, now=now)
    await anyio.to_thread.run_sync(private_postgres.process.halt)
    with pytest.raises(StoreUnavailable):
        spend.spent("key_a", now=now)
    await spend.settle(None, "key_a", 7.0, model="m", calls=1, now=now)  # no error: kept
    assert not await spend.retry()  # still down: still kept
    await anyio.to_thread.run_sync(private_postgres.process.resume)
    deadline = time.monotonic() + 15
    while not await spend.retry():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    assert spend.spent("key_a", now=now)[0] == 12.0 and spend.lost == 0


async def test_a_stream_outlives_a_redis_and_a_postgresql_restart(
        tmp_path: Path, pg: str, private_postgres: PostgresServer, private_redis: RedisServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import cfai_cli.emulator.chat
    import cfai_cli.emulator.native

    for module in (cfai_cli.emulator.chat, cfai_cli.emulator.native):
        monkeypatch.setattr(module, "SLOW_SECONDS", 0.25)
    settings = replace(_settings(tmp_path, pg, private_redis.url), timeout=60)  # a slow stream, not a stuck one
    key, record = KeyStore(pg).create("stream", KeyPolicy(rpm=100, budget_neurons_per_day=1e6))
    body = {**CHAT, "stream": True, "max_tokens": 64,
            "messages": [{"role": "user", "content": "Say a few words. [emulator:slow]"}]}
    async with _client(settings, key) as client:
        async def stream() -> tuple[int, str]:
            answer = await client.post("/v1/chat/completions", json=body)
            return answer.status_code, answer.text

        task = asyncio.create_task(stream())
        await asyncio.sleep(0.8)  # admitted (key, rate limit and budget hold read) and streaming
        await anyio.to_thread.run_sync(private_redis.process.restart)
        await anyio.to_thread.run_sync(private_postgres.process.restart)
        assert not task.done(), "the stream ended before both restarts: make it slower"
        started = time.monotonic()
        status, text = await task
        assert time.monotonic() - started > 0.5, "the stream ended right after the restarts: make it slower"
        assert status == 200 and text.rstrip().endswith("data: [DONE]"), text[-300:]
        assert '"error"' not in text
    # The recorder flushed at shutdown (retrying past the restart): the stream's row is there, with its neurons
    # settled on the durable budget ledger.
    rows = [r for r in UsageLog(pg).rows(since=0) if r.key_id == record.id]
    assert [(r.route, r.status) for r in rows] == [("chat/completions", 200)]
    assert SpendStore(pg).spent(record.id, now=time.time())[0] == pytest.approx(rows[0].neurons or 0.0)


async def test_redis_failures_are_counted_by_part_and_shown_on_health(tmp_path: Path,
                                                                     private_redis: RedisServer) -> None:
    base = load_settings({"timeout": 5}, environ={"CFAI_HOME": str(tmp_path)}).as_offline()
    settings = replace(base, coordination=CoordinationConfig(url=private_redis.url, on_failure="open"))
    scopes = frozenset({"chat", "admin", "models"})
    key, _ = KeyStore(settings.database).create("ops", KeyPolicy(scopes=scopes, rpm=100))
    async with _client(settings, key) as client:
        assert (await client.get("/health")).json()["coordination"] == {
            "status": "ok", "at": f"127.0.0.1:{private_redis.port}"}
        await anyio.to_thread.run_sync(private_redis.process.halt)
        for _ in range(3):  # admitted on the local limiter (open), each failed admission counted
            assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
        health = (await client.get("/health")).json()
        assert health["status"] == "degraded" and health["coordination"]["status"] == "unavailable"
        assert "store" not in health  # the SQLite file: nothing shared to report
        metrics = (await client.get("/metrics")).text
        counted = [line for line in metrics.splitlines()
                   if line.startswith('cfai_coordination_failures_total{part="limits"}')]
        assert counted and float(counted[0].split()[-1]) >= 3, metrics
        await anyio.to_thread.run_sync(private_redis.process.resume)
        health = (await client.get("/health")).json()
        assert health["status"] == "ok" and health["coordination"]["status"] == "ok"


async def test_requests_served_during_an_outage_are_in_cfai_usage_after_it(
        tmp_path: Path, pg: str, private_postgres: PostgresServer, private_redis: RedisServer) -> None:
    """Without keys (`--no-auth`) a request needs no database: it is served, and its row waits for the store."""
    import json

    from typer.testing import CliRunner

    from cfai_cli.cli.app import app as cli_app

    settings = _settings(tmp_path, pg, private_redis.url)
    app = create_app(settings, no_auth=True)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        await anyio.to_thread.run_sync(private_postgres.process.halt)
        for _ in range(3):
            assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
        await asyncio.sleep(1.5)  # a tick of the recorder fails and keeps the rows
        await anyio.to_thread.run_sync(private_postgres.process.resume)
        await asyncio.sleep(1.5)  # (the shutdown would write them too: this shows the running recorder does)
        result = await anyio.to_thread.run_sync(lambda: CliRunner().invoke(
            cli_app, ["usage", "--json"], env={"CFAI_HOME": str(tmp_path), "CFAI_STORE_URL": pg},
            catch_exceptions=False))
    assert result.exit_code == 0, result.output
    groups = json.loads(result.stdout)["groups"]
    assert sum(group["requests"] for group in groups) == 3, groups
