"""The batch executor in-process (as the CLI will run it): leases keep two executors off one batch, rate
limits make lines wait instead of failing, and a batch past its window expires with its unrun lines reported."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cfai_cli.core.openai.batches import CreateBatchRequest
from cfai_cli.core.store_url import StoreConfig
from cfai_cli.service.batch_executor import BatchExecutor
from cfai_cli.service.batches import create_batch, get_batch
from cfai_cli.service.context import Context, open_context
from cfai_cli.service.files import file_content, upload_file
from cfai_cli.settings import Settings, load_settings
from cfai_cli.store.batches import BatchStore, LeaseLost
from cfai_cli.store.keys import KeyPolicy, KeyStore
from cfai_cli.store.usage import UsageRow

pytestmark = pytest.mark.anyio
CHAT = "/v1/chat/completions"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(tmp_path: Path, database: Path | str) -> Settings:
    """Batches, files and keys in the SQLite file, or in PostgreSQL (`database`: every test runs on both)."""
    base = load_settings({"account_id": "x", "api_token": "y"}, environ={"CFAI_HOME": str(tmp_path)})
    store = StoreConfig(url=database) if isinstance(database, str) else StoreConfig()
    return replace(base, batch_concurrency=2, store=store).as_offline()


@pytest.fixture
async def ctx(settings: Settings) -> AsyncIterator[Context]:
    async with open_context(settings) as opened:
        yield opened


async def new_batch(ctx: Context, n: int, *, owner: str | None = None, prefix: str = "l") -> str:
    lines = [{"custom_id": f"{prefix}{i}", "method": "POST", "url": CHAT,
              "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": str(i)}]}} for i in range(n)]
    data = io.BytesIO("\n".join(json.dumps(line) for line in lines).encode())
    upload = await upload_file(ctx, data, owner=owner, purpose="batch", filename="in.jsonl")
    req = CreateBatchRequest(input_file_id=upload["id"], endpoint=CHAT, completion_window="24h")
    return str(create_batch(ctx, req, owner=owner)["id"])


async def finished(ctx: Context, batch_id: str, owner: str | None = None) -> dict[str, Any]:
    for _ in range(500):
        batch = get_batch(ctx, batch_id, owner=owner)
        if batch["status"] in ("completed", "failed", "cancelled", "expired"):
            return batch
        await asyncio.sleep(0.02)
    raise AssertionError(batch)


async def lines_of(ctx: Context, file_id: str | None, owner: str | None = None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(line) for line in (await file_content(ctx, file_id, owner=owner)).decode().splitlines()]


async def test_two_executors_never_run_one_line_twice(ctx: Context) -> None:
    rows: list[UsageRow] = []
    ids = [await new_batch(ctx, 4, prefix=f"b{n}-") for n in range(3)]
    one = BatchExecutor(ctx, sink=rows.append, keys_required=False, holder="one", poll_interval=0.01)
    two = BatchExecutor(ctx, sink=rows.append, keys_required=False, holder="two", poll_interval=0.01)
    one.start()
    two.start()
    try:
        done = [await finished(ctx, batch_id) for batch_id in ids]
    finally:
        await one.stop()
        await two.stop()
    assert one.runner.calls + two.runner.calls == 12 and len(rows) == 12
    for batch in done:
        answered = [line["custom_id"] for line in await lines_of(ctx, batch["output_file_id"])]
        assert batch["status"] == "completed" and len(answered) == len(set(answered)) == 4


def test_a_lease_is_one_holders_until_it_runs_out(settings: Settings) -> None:
    store = BatchStore(settings.storage)
    store.create(batch_id="batch_x", owner=None, endpoint=CHAT, input_file_id="file-x", completion_window="24h",
                 metadata=None, created_at=0, expires_at=86400)
    assert store.claim("one", now=100.0, ttl=30.0, limit=5) == ["batch_x"]
    assert store.claim("two", now=110.0, ttl=30.0, limit=5) == []  # held
    assert store.renew("batch_x", "one", now=120.0, ttl=30.0)
    assert store.claim("two", now=140.0, ttl=30.0, limit=5) == []  # renewed until 150
    assert store.claim("two", now=151.0, ttl=30.0, limit=5) == ["batch_x"]  # one stopped renewing
    assert not store.renew("batch_x", "one", now=152.0, ttl=30.0)
    with pytest.raises(LeaseLost):  # the old holder can no longer write a result
        store.finish_line("batch_x", "one", 1, ok=True, output={})
    with pytest.raises(LeaseLost):
        store.update("batch_x", "one", status="completed")


async def test_rate_limited_lines_wait_for_their_window(ctx: Context, settings: Settings) -> None:
    key, record = KeyStore(settings.storage).create("slow", KeyPolicy(rpm=1))
    waits: list[float] = []

    async def window_passes(seconds: float) -> None:  # a minute goes by: the key's window empties
        waits.append(seconds)
        with sqlite3.connect(settings.database) as conn:
            conn.execute("DELETE FROM rate_log")
        await asyncio.sleep(0)

    batch_id = await new_batch(ctx, 3, owner=record.id)
    executor = BatchExecutor(ctx, sink=lambda row: None, keys_required=True, poll_interval=0.01,
                             sleep=window_passes)
    executor.start()
    try:
        done = await finished(ctx, batch_id, owner=record.id)
    finally:
        await executor.stop()
    assert done["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
    assert waits and all(0 < w <= 60 for w in waits)
    assert key


async def test_a_batch_past_its_window_expires(ctx: Context) -> None:
    batch_id = await new_batch(ctx, 3)
    late = ctx.for_request(ctx.record)
    late.clock = lambda: ctx.clock() + 86400 + 5
    executor = BatchExecutor(late, sink=lambda row: None, keys_required=False, poll_interval=0.01)
    executor.start()
    try:
        done = await finished(ctx, batch_id)
    finally:
        await executor.stop()
    assert done["status"] == "expired" and done["expired_at"] and "output_file_id" not in done
    assert done["request_counts"] == {"total": 3, "completed": 0, "failed": 3}
    errors = await lines_of(ctx, done["error_file_id"])
    assert [line["custom_id"] for line in errors] == ["l0", "l1", "l2"]
    assert all(line["response"] is None and line["error"]["code"] == "batch_expired" for line in errors)
    assert executor.runner.calls == 0


async def test_an_executor_that_requires_keys_leaves_keyless_batches_to_the_cli(ctx: Context,
                                                                              settings: Settings) -> None:
    _, record = KeyStore(settings.storage).create("owner", KeyPolicy())
    keyless = await new_batch(ctx, 2, prefix="cli")
    owned = await new_batch(ctx, 2, owner=record.id, prefix="api")
    keyed = BatchExecutor(ctx, sink=lambda row: None, keys_required=True, poll_interval=0.01)
    try:
        assert await keyed.claim_once() == [owned]  # the CLI's batch is not its to run (it would fail every line)
        done = await finished(ctx, owned, owner=record.id)
    finally:
        await keyed.stop()
    assert done["request_counts"]["completed"] == 2
    assert get_batch(ctx, keyless, owner=None)["status"] == "validating"
    anyone = BatchExecutor(ctx, sink=lambda row: None, keys_required=False, poll_interval=0.01)
    try:
        assert await anyone.claim_once() == [keyless]
        assert (await finished(ctx, keyless))["request_counts"]["completed"] == 2
    finally:
        await anyone.stop()
