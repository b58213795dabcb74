"""The CLI's way of running one batch (service.batch_admin): only that batch's lease, never one another process
holds; the local admin's view of every owner's batches."""

from __future__ import annotations

import io
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cfai_cli.core.openai.batches import CreateBatchRequest
from cfai_cli.core.store_url import StoreConfig
from cfai_cli.errors import InvalidRequest, NotFound
from cfai_cli.service.batch_admin import OneBatchExecutor, find_batch, inspect_input, list_all, run_here
from cfai_cli.service.batches import create_batch
from cfai_cli.service.context import Context, open_context
from cfai_cli.service.files import upload_file
from cfai_cli.settings import Settings, load_settings
from cfai_cli.store.batches import BatchStore
from cfai_cli.store.usage import UsageRow

pytestmark = pytest.mark.anyio
CHAT = "/v1/chat/completions"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(tmp_path: Path, database: Path | str) -> Settings:
    """Batches and files in the SQLite file, or in PostgreSQL (`database`: every test runs on both)."""
    store = StoreConfig(url=database) if isinstance(database, str) else StoreConfig()
    return replace(load_settings({}, environ={"CFAI_HOME": str(tmp_path)}), store=store).as_offline()


@pytest.fixture
async def ctx(settings: Settings) -> AsyncIterator[Context]:
    async with open_context(settings) as opened:
        yield opened


async def new_batch(ctx: Context, n: int, owner: str | None = None) -> str:
    lines = [{"custom_id": f"l{i}", "method": "POST", "url": CHAT,
              "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": str(i)}]}} for i in range(n)]
    upload = await upload_file(ctx, io.BytesIO("\n".join(json.dumps(x) for x in lines).encode()), owner=owner,
                               purpose="batch", filename="in.jsonl")
    req = CreateBatchRequest(input_file_id=upload["id"], endpoint=CHAT, completion_window="24h")
    return str(create_batch(ctx, req, owner=owner)["id"])


async def test_only_the_named_batch_is_claimed(ctx: Context) -> None:
    other, wanted = await new_batch(ctx, 2), await new_batch(ctx, 2)
    rows: list[UsageRow] = []
    batch = await run_here(ctx, wanted, owner=None, sink=rows.append, interval=0.02)
    assert batch["status"] == "completed" and len(rows) == 2
    store = BatchStore(ctx.settings.storage)
    assert store.load(other)["status"] == "validating"  # the CLI ran what it was asked to, nothing else
    assert store.load(wanted)["total"] == 2


async def test_a_held_batch_is_only_watched_until_its_lease_runs_out(ctx: Context) -> None:
    batch_id = await new_batch(ctx, 3)
    store = BatchStore(ctx.settings.storage)
    claimed = time.time()
    until = claimed + 3.0  # long enough that a loaded CI machine still asks below while the lease holds
    assert store.claim("a-server", now=claimed, ttl=3.0, limit=5) == [batch_id]  # a server that then died
    assert not await OneBatchExecutor(ctx, batch_id, sink=lambda row: None, keys_required=False).claim_once()
    seen: list[tuple[float, str]] = []
    batch = await run_here(ctx, batch_id, owner=None, sink=lambda row: None, interval=0.05,
                           progress=lambda b: seen.append((time.time(), b["status"])))
    assert batch["status"] == "completed"
    assert all(status == "validating" for at, status in seen if at < until - 0.05)
    assert any(at >= until for at, _ in seen)


async def test_the_admin_sees_every_owner(ctx: Context, settings: Settings) -> None:
    mine, theirs = await new_batch(ctx, 1), await new_batch(ctx, 1, owner="key_someone")
    page, owners = list_all(settings, limit=10)
    assert [b["id"] for b in page["data"]] == [theirs, mine]
    assert owners == {mine: None, theirs: "key_someone"}
    assert find_batch(settings, theirs)[1] == "key_someone"
    with pytest.raises(NotFound):
        find_batch(settings, "batch_missing")
    page, _ = list_all(settings, limit=1, after=theirs)
    assert [b["id"] for b in page["data"]] == [mine] and not page["has_more"]


def test_inspect_input_names_the_line_and_collects_urls(tmp_path: Path) -> None:
    good = tmp_path / "in.jsonl"
    lines: list[dict[str, Any]] = [{"custom_id": "a", "method": "POST", "url": CHAT, "body": {}},
                                   {"custom_id": "b", "method": "POST", "url": "/v1/embeddings", "body": {}}]
    good.write_text("\n" + "\n".join(json.dumps(x) for x in lines) + "\n")
    found = inspect_input(good, 10)
    assert found.requests == 2 and found.urls == {CHAT: 2, "/v1/embeddings": 3}
    with pytest.raises(InvalidRequest, match="line 2: a batch file holds at most 1 requests"):
        inspect_input(_two(tmp_path), 1)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(InvalidRequest, match="holds no requests"):
        inspect_input(empty, 10)


def _two(tmp_path: Path) -> Path:
    path = tmp_path / "two.jsonl"
    path.write_text("\n".join(json.dumps({"custom_id": c, "method": "POST", "url": CHAT, "body": {}}) for c in "xy"))
    return path
