"""The Files and Batch API through the real `openai` SDK (strict validation) against the in-process proxy and the
offline emulator: uploads, batches that finish with every custom_id answered, privacy between keys, cancel,
and a batch surviving a restart of the server halfway without re-running its finished lines."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import httpx
import openai
import pytest

from cfai_cli.core.store_url import StoreConfig
from cfai_cli.emulator import create_emulator_app
from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings
from cfai_cli.store.keys import KeyPolicy, KeyStore
from cfai_cli.store.usage import UsageLog
from tests.openai_schema import validate
from tests.sdk import sdk_httpx

pytestmark = pytest.mark.anyio
CHAT = "/v1/chat/completions"


class Gate(httpx.AsyncBaseTransport):
    """The emulator behind a gate: counts model runs, and holds every run past the first `open_runs` until
    `release` is set (a slow Workers AI, to stop a batch halfway)."""

    def __init__(self, open_runs: int | None = None) -> None:
        self.inner = httpx.ASGITransport(app=create_emulator_app())
        self.open_runs = open_runs
        self.runs = 0
        self.release = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if "/ai/run/" in request.url.path:
            self.runs += 1
            if self.open_runs is not None and self.runs > self.open_runs:
                await self.release.wait()
        return await self.inner.handle_async_request(request)


@asynccontextmanager
async def sdk(settings: Settings, key: str, gate: Gate | None = None) -> AsyncIterator[openai.AsyncOpenAI]:
    app = create_app(settings.as_offline(), transport=gate or Gate())
    async with app.router.lifespan_context(app), sdk_httpx.AsyncClient(
        transport=sdk_httpx.ASGITransport(app=app), base_url="http://proxy.test/v1"
    ) as http:
        yield openai.AsyncOpenAI(api_key=key, base_url="http://proxy.test/v1", http_client=http, max_retries=0,
                                 _strict_response_validation=True)


def chat_line(custom_id: str, model: str = "gpt-4o-mini", **body: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": CHAT,
            "body": {"model": model, "messages": [{"role": "user", "content": f"say {custom_id}"}], **body}}


def jsonl(lines: list[dict[str, Any]]) -> tuple[str, io.BytesIO]:
    return "in.jsonl", io.BytesIO("\n".join(json.dumps(line) for line in lines).encode())


async def until(client: openai.AsyncOpenAI, batch_id: str, done: Callable[[Any], bool], seconds: float = 10.0) -> Any:
    for _ in range(int(seconds / 0.02)):
        batch = await client.batches.retrieve(batch_id)
        if done(batch):
            return batch
        await asyncio.sleep(0.02)
    raise AssertionError(f"batch never got there: {batch}")


def final(batch: Any) -> bool:
    return batch.status in ("completed", "failed", "cancelled", "expired")


async def outputs(client: openai.AsyncOpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    text = (await client.files.content(file_id)).text
    return [json.loads(line) for line in text.splitlines()]


async def submit(client: openai.AsyncOpenAI, lines: list[dict[str, Any]], endpoint: str = CHAT) -> Any:
    upload = await client.files.create(file=jsonl(lines), purpose="batch")
    return await client.batches.create(input_file_id=upload.id, endpoint=endpoint,  # type: ignore[arg-type]
                                       completion_window="24h", metadata={"job": "test"})


# A test so marked runs twice: batches, files, keys and usage in the SQLite file, then in PostgreSQL (`database`).
both_engines = pytest.mark.usefixtures("database")


def store_of(request: pytest.FixtureRequest) -> StoreConfig:
    """The store a test's app uses: PostgreSQL when both_engines gives it a `database` URL, else cfai.db."""
    if "database" in request.fixturenames:
        database = request.getfixturevalue("database")
        if isinstance(database, str):
            return StoreConfig(url=database)
    return StoreConfig()


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return replace(settings, batch_concurrency=1, store=store_of(request))


def make_key(settings: Settings, **policy: Any) -> str:
    return KeyStore(settings.storage).create("batch", KeyPolicy(**policy))[0]


@both_engines
async def test_a_mixed_batch_answers_every_custom_id(settings: Settings) -> None:
    key = make_key(settings, models=("gpt-4o-mini", "@cf/meta/*"))
    lines = [chat_line("ok-1"), chat_line("forbidden", model="@cf/qwen/qwq-32b"),
             {**chat_line("bad-body"), "body": {"model": "gpt-4o-mini", "messages": "not a list"}},
             chat_line("ok-2", temperature=0)]
    gate = Gate()
    async with sdk(settings, key, gate) as client:
        batch = await submit(client, lines)
        assert batch.status == "validating" and batch.metadata == {"job": "test"}
        done = await until(client, batch.id, final)
        raw = await client.with_raw_response.batches.retrieve(batch.id)
        listed = await client.batches.list()
        good, bad = await outputs(client, done.output_file_id), await outputs(client, done.error_file_id)
        output_file = await client.files.retrieve(done.output_file_id)
    validate(json.loads(raw.http_response.text), "Batch")
    assert done.status == "completed" and done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (4, 2, 2)
    assert done.in_progress_at and done.finalizing_at and done.completed_at and done.usage
    assert [b.id for b in listed.data] == [batch.id]
    assert output_file.purpose == "batch_output"
    assert sorted(line["custom_id"] for line in good + bad) == ["bad-body", "forbidden", "ok-1", "ok-2"]
    for line in good:
        assert line["response"]["status_code"] == 200 and line["error"] is None
        validate(line["response"]["body"], "CreateChatCompletionResponse")
        assert f"say {line['custom_id']}" in line["response"]["body"]["choices"][0]["message"]["content"]
    by_id = {line["custom_id"]: line["response"] for line in bad}
    assert by_id["forbidden"]["status_code"] == 403
    assert by_id["forbidden"]["body"]["error"]["code"] == "model_not_allowed"
    assert by_id["bad-body"]["status_code"] == 400 and by_id["bad-body"]["body"]["error"]["param"] == "messages"
    assert gate.runs == 2  # the refused lines never reached Workers AI
    await asyncio.sleep(0)
    # usage attributed to the key, as live requests are
    rows = [(u.key_id, u.route, u.status) for u in UsageLog(settings.storage).rows(since=0)
            if u.route.startswith("batch/")]
    key_id = KeyStore(settings.storage).list()[0].id
    assert sorted(rows) == sorted([(key_id, "batch/chat/completions", s) for s in (200, 200, 403, 400)])


async def test_an_embeddings_batch(settings: Settings) -> None:
    key = make_key(settings)
    lines = [{"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
              "body": {"model": "text-embedding-3-small", "input": [f"text {i}", "more"]}} for i in range(3)]
    async with sdk(settings, key) as client:
        batch = await submit(client, lines, endpoint="/v1/embeddings")
        done = await until(client, batch.id, final)
        good = await outputs(client, done.output_file_id)
    assert done.status == "completed" and done.error_file_id is None
    for line in good:
        validate(line["response"]["body"], "CreateEmbeddingResponse")
        assert len(line["response"]["body"]["data"]) == 2


@pytest.mark.parametrize(("lines", "words"), [
    ([chat_line("a"), chat_line("b"), {"method": "POST", "url": CHAT, "body": {}}], "line 3: 'custom_id'"),
    ([chat_line("a"), chat_line("a")], "line 2: 'custom_id' 'a' is used by an earlier line"),
    ([chat_line("a"), "{not json"], "line 2: not valid JSON"),
    ([{**chat_line("a"), "url": "/v1/images/generations"}], "line 1: 'url' must be one of"),
    ([{**chat_line("a"), "method": "GET"}], "line 1: 'method'"),
])
async def test_bad_jsonl_is_refused_naming_the_line(settings: Settings, lines: list[Any], words: str) -> None:
    key = make_key(settings)
    body = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines).encode()
    async with sdk(settings, key) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.files.create(file=("in.jsonl", io.BytesIO(body)), purpose="batch")
        listed = await client.files.list()
    error = refused.value.body
    assert isinstance(error, dict) and words in error["message"] and error["param"] == "file"
    assert listed.data == []  # nothing kept of a refused upload
    assert not [p for p in settings.files_dir.iterdir()]


async def test_upload_limits_and_purpose(settings: Settings) -> None:
    key = make_key(settings)
    small = replace(settings, max_file_mb=0.001, batch_max_lines=2)  # about 1 KB
    async with sdk(small, key) as client:
        with pytest.raises(openai.BadRequestError) as purpose:
            await client.files.create(file=jsonl([chat_line("a")]), purpose="fine-tune")
        with pytest.raises(openai.APIStatusError) as large:
            await client.files.create(file=("big.txt", io.BytesIO(b"x" * 200_000)), purpose="user_data")
        with pytest.raises(openai.BadRequestError) as many:
            await client.files.create(file=jsonl([chat_line(str(i)) for i in range(3)]), purpose="batch")
        kept = await client.files.create(file=("notes.txt", io.BytesIO(b"anything")), purpose="user_data")
        content = await client.files.content(kept.id)
    assert purpose.value.body["param"] == "purpose"  # type: ignore[index]
    assert large.value.status_code == 413 and large.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    assert "line 3: a batch file holds at most 2 requests" in many.value.body["message"]  # type: ignore[index]
    assert content.content == b"anything" and kept.bytes == 8
    stored = settings.files_dir / kept.id
    assert stored.stat().st_mode & 0o777 == 0o600


@both_engines
async def test_a_keys_uploads_are_bounded_in_files_and_bytes_and_other_keys_are_not(settings: Settings) -> None:
    owner, other = make_key(settings), make_key(settings)
    capped = replace(settings, max_files_per_key=2, max_stored_files_mb=0.0001)  # 2 files, about 104 bytes
    async with sdk(capped, owner) as client:
        first = await client.files.create(file=("a.txt", io.BytesIO(b"x" * 60)), purpose="user_data")
        with pytest.raises(openai.APIStatusError) as bytes_full:  # 60 + 60 > 104
            await client.files.create(file=("b.txt", io.BytesIO(b"y" * 60)), purpose="user_data")
        await client.files.create(file=("c.txt", io.BytesIO(b"z" * 10)), purpose="user_data")
        with pytest.raises(openai.APIStatusError) as count_full:  # a third file
            await client.files.create(file=("d.txt", io.BytesIO(b"w")), purpose="user_data")
        await client.files.delete(first.id)  # deleting frees its room
        again = await client.files.create(file=("e.txt", io.BytesIO(b"v" * 60)), purpose="user_data")
    async with sdk(capped, other) as stranger:  # the quota is each key's own
        await stranger.files.create(file=("f.txt", io.BytesIO(b"u" * 60)), purpose="user_data")
    for refused in (bytes_full, count_full):
        assert refused.value.status_code == 413
        assert refused.value.body["code"] == "storage_quota_exceeded"  # type: ignore[index]
    assert again.bytes == 60
    assert len(list(settings.files_dir.iterdir())) == 3  # nothing kept of the refused uploads


@both_engines
async def test_another_key_sees_nothing(settings: Settings) -> None:
    owner, stranger = make_key(settings), make_key(settings)
    async with sdk(settings, owner) as client:
        batch = await submit(client, [chat_line("a")])
        done = await until(client, batch.id, final)
    async with sdk(settings, stranger) as other:
        calls = [other.files.retrieve(batch.input_file_id), other.files.content(batch.input_file_id),
                 other.files.delete(batch.input_file_id), other.files.retrieve(done.output_file_id),
                 other.batches.retrieve(batch.id), other.batches.cancel(batch.id),
                 other.batches.create(input_file_id=batch.input_file_id, endpoint=CHAT, completion_window="24h")]
        for call in calls:
            with pytest.raises(openai.NotFoundError):
                await call
        assert (await other.files.list()).data == [] and (await other.batches.list()).data == []
    async with sdk(settings, owner) as client:
        assert (await client.files.retrieve(batch.input_file_id)).id == batch.input_file_id
        deleted = await client.files.delete(batch.input_file_id)
        assert deleted.deleted
        with pytest.raises(openai.NotFoundError):
            await client.files.retrieve(batch.input_file_id)


async def test_a_line_for_another_endpoint_fails_the_batch(settings: Settings) -> None:
    key = make_key(settings)
    lines = [chat_line("a"), {"custom_id": "b", "method": "POST", "url": "/v1/embeddings",
                              "body": {"model": "text-embedding-3-small", "input": "x"}}]
    async with sdk(settings, key) as client:
        batch = await submit(client, lines)
        done = await until(client, batch.id, final)
        raw = await client.with_raw_response.batches.retrieve(batch.id)
    validate(json.loads(raw.http_response.text), "Batch")
    assert done.status == "failed" and done.failed_at and done.errors and done.errors.data
    assert done.errors.data[0].line == 2 and done.errors.data[0].code == "mismatched_endpoint"


@both_engines
async def test_cancel_keeps_the_finished_lines(settings: Settings) -> None:
    key = make_key(settings)
    gate = Gate(open_runs=2)
    async with sdk(settings, key, gate) as client:
        batch = await submit(client, [chat_line(f"l{i}") for i in range(5)])
        await until(client, batch.id, lambda b: b.request_counts.completed == 2 and gate.runs == 3)
        cancelling = await client.batches.cancel(batch.id)
        assert cancelling.status == "cancelling" and cancelling.cancelling_at
        gate.release.set()  # the line in flight finishes and is kept; no new line starts
        done = await until(client, batch.id, final)
        good = await outputs(client, done.output_file_id)
    assert done.status == "cancelled" and done.cancelled_at
    assert [line["custom_id"] for line in good] == ["l0", "l1", "l2"]
    assert gate.runs == 3


@both_engines
async def test_a_batch_survives_a_restart_without_rerunning_finished_lines(settings: Settings) -> None:
    key = make_key(settings)
    first = Gate(open_runs=2)
    async with sdk(settings, key, first) as client:
        batch = await submit(client, [chat_line(f"l{i}") for i in range(5)])
        await until(client, batch.id, lambda b: b.request_counts.completed == 2 and first.runs == 3)
    # The server stopped with line 3 in flight (it stays to do); a new one on the same data directory carries on.
    second = Gate()
    async with sdk(settings, key, second) as client:
        done = await until(client, batch.id, final)
        good = await outputs(client, done.output_file_id)
    assert done.status == "completed" and done.request_counts.completed == 5
    assert second.runs == 3  # l2 (interrupted), l3 and l4: the two finished lines did not run again
    assert sorted(line["custom_id"] for line in good) == [f"l{i}" for i in range(5)]


async def test_a_budget_refusal_fails_the_remaining_lines(settings: Settings) -> None:
    key = make_key(settings, budget_neurons_per_day=0.000001)
    async with sdk(settings, key) as client:
        batch = await submit(client, [chat_line(f"l{i}") for i in range(3)])
        done = await until(client, batch.id, final)
        good, bad = await outputs(client, done.output_file_id), await outputs(client, done.error_file_id)
    assert done.status == "completed"
    assert [line["custom_id"] for line in good] == ["l0"]
    assert [line["custom_id"] for line in bad] == ["l1", "l2"]
    for line in bad:
        assert line["response"]["status_code"] == 429
        assert line["response"]["body"]["error"]["code"] == "insufficient_quota"


async def test_bad_batch_requests_are_400s_naming_the_parameter(settings: Settings) -> None:
    key = make_key(settings, scopes=frozenset({"embeddings"}))
    async with sdk(settings, key) as client:
        upload = await client.files.create(file=jsonl([chat_line("a")]), purpose="batch")
        notes = await client.files.create(file=("n.txt", io.BytesIO(b"x")), purpose="user_data")
        cases = [({"endpoint": "/v1/images/generations"}, "endpoint"), ({"completion_window": "1h"},
                 "completion_window"), ({"input_file_id": notes.id, "endpoint": "/v1/embeddings"}, "input_file_id"),
                 ({"metadata": {str(i): "v" for i in range(17)}}, "metadata")]
        for change, param in cases:
            args = {"input_file_id": upload.id, "endpoint": CHAT, "completion_window": "24h", **change}
            with pytest.raises(openai.BadRequestError) as refused:
                await client.batches.create(**args)  # type: ignore[arg-type]
            assert refused.value.body["param"] == param  # type: ignore[index]
        with pytest.raises(openai.PermissionDeniedError):  # no chat scope: no chat batch either
            await client.batches.create(input_file_id=upload.id, endpoint=CHAT, completion_window="24h")


@both_engines
async def test_lists_page_newest_first(settings: Settings) -> None:
    key = make_key(settings)
    async with sdk(settings, key) as client:
        ids = [(await client.files.create(file=(f"{i}.txt", io.BytesIO(b"x")), purpose="user_data")).id
               for i in range(3)]
        batch_file = await client.files.create(file=jsonl([chat_line("a")]), purpose="batch")
        first = await client.files.list(limit=2, purpose="user_data")
        rest = await client.files.list(limit=2, purpose="user_data", after=first.data[-1].id)
        oldest = await client.files.list(order="asc", limit=1)
        batches = [await client.batches.create(input_file_id=batch_file.id, endpoint=CHAT, completion_window="24h")
                   for _ in range(3)]
        page = await client.batches.list(limit=2)
        after = await client.batches.list(limit=2, after=page.data[-1].id)
        raw = await client.with_raw_response.files.list()
    assert [f.id for f in first.data] == ids[:0:-1] and first.has_more
    assert [f.id for f in rest.data] == ids[:1] and not rest.has_more
    assert [f.id for f in oldest.data] == ids[:1]
    assert [b.id for b in page.data + after.data] == [b.id for b in reversed(batches)] and page.has_more
    validate(json.loads(raw.http_response.text), "ListFilesResponse")
