"""service.batch_queue: OpenAI batch lines run as Workers AI async batches, through a real Context against the
emulator (offline) or a fake in front of it: submit, poll until done, item failures, a model without the queue,
a job polled again after a restart, the account a job is pinned to, and one usage row per line for the key."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cfai_cli.core.catalog import PUBLISHED_PRICES
from cfai_cli.core.cost import Units, estimate_neurons
from cfai_cli.emulator import create_emulator_app
from cfai_cli.errors import InvalidRequest, PermissionDenied, RequestTooLarge, UpstreamError
from cfai_cli.service import batch_queue
from cfai_cli.service.batch_queue import (
    LineOutcome,
    QueuedJob,
    QueuedLine,
    plan_chunks,
    poll,
    queue_supported,
    queueable,
    submit,
    supports_queue,
    usage_rows,
)
from cfai_cli.service.context import Context, open_context
from cfai_cli.service.record import RequestRecord
from cfai_cli.settings import Settings, load_settings
from cfai_cli.store.usage import UsageLog
from cfai_cli.upstream.workers_account import MAX_QUEUE_BYTES
from tests.openai_schema import validate

pytestmark = pytest.mark.anyio

LLAMA = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
QWEN3 = "@cf/qwen/qwen3-30b-a3b-fp8"  # flagged async_queue in the (emulated) catalogue, not in the docs' list
SMALL = "@cf/meta/llama-3.1-8b-instruct-fast"
BGE = "@cf/baai/bge-base-en-v1.5"
CHAT, EMBED, LEGACY = "/v1/chat/completions", "/v1/embeddings", "/v1/completions"
MAIN, BACKUP = "0123abcd", "feed0000"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def offline(tmp_path: Path) -> Settings:
    return load_settings({}, environ={"CFAI_HOME": str(tmp_path), "CFAI_OFFLINE": "1"})


def chat_line(custom_id: str, text: str, model: str = LLAMA, **extra: Any) -> QueuedLine:
    return QueuedLine(custom_id=custom_id, body={"model": model, "messages": [{"role": "user", "content": text}],
                                                 **extra})


async def finish(ctx: Context, job: QueuedJob, *, most: int = 5) -> tuple[list[LineOutcome], int]:
    """Poll until done: (the outcomes, how many polls said the batch was still pending)."""
    for pending in range(most):
        outcomes = await poll(ctx, job)
        if outcomes is not None:
            return outcomes, pending
    raise AssertionError("the batch never finished")


# ---- which models and lines --------------------------------------------------------------------------------


def entry(task: str, flag: object = None) -> dict[str, Any]:
    props = [] if flag is None else [{"property_id": "async_queue", "value": flag}]
    return {"name": "x", "task": {"id": "t", "name": task}, "properties": props}


@pytest.mark.parametrize("model, endpoint, catalogue_entry, supported", [
    (LLAMA, CHAT, None, True),  # the docs' list
    (LLAMA, LEGACY, None, True),
    (LLAMA, EMBED, None, False),  # a text model does not embed
    (BGE, EMBED, None, True),
    ("@cf/baai/bge-m3", EMBED, None, True),
    ("@cf/meta/m2m100-1.2b", CHAT, None, False),  # it queues, but no OpenAI endpoint here reaches it
    (QWEN3, CHAT, None, False),  # not listed, and no catalogue entry to say so
    (QWEN3, CHAT, entry("Text Generation", "true"), True),
    (QWEN3, CHAT, entry("Text Generation", True), True),
    (QWEN3, CHAT, entry("Text Generation", "false"), False),
    (QWEN3, CHAT, entry("Text Generation"), False),
    (QWEN3, EMBED, entry("Text Generation", "true"), False),
    (LLAMA, CHAT, entry("Text Generation"), True),  # the docs' list wins where the catalogue says nothing
    ("@cf/openai/whisper-large-v3-turbo", CHAT, entry("Automatic Speech Recognition", "true"), False),
    (LLAMA, "/v1/responses", None, False),
])
def test_which_models_queue_for_which_endpoint(model: str, endpoint: str, catalogue_entry: dict[str, Any] | None,
                                               supported: bool) -> None:
    assert queue_supported(model, endpoint, catalogue_entry) is supported


async def test_supports_queue_reads_the_catalogue(offline: Settings) -> None:
    async with open_context(offline) as ctx:
        assert await supports_queue(ctx, QWEN3, CHAT)  # flagged "true" in the emulator's catalogue
        assert await supports_queue(ctx, LLAMA, CHAT) and await supports_queue(ctx, BGE, EMBED)
        assert not await supports_queue(ctx, SMALL, CHAT)
        assert not await supports_queue(ctx, QWEN3, EMBED)


def test_lines_that_cannot_be_queued_are_left_to_the_live_path() -> None:
    assert queueable(CHAT, chat_line("a", "hi"))
    assert not queueable(CHAT, chat_line("a", "hi", stream=True))
    assert not queueable(CHAT, chat_line("a", "hi", n=2))
    assert not queueable(CHAT, QueuedLine(custom_id="a", body={"messages": [{"role": "user", "content": "no model"}]}))
    assert not queueable("/v1/responses", chat_line("a", "hi"))
    huge = chat_line("a", "x" * batch_queue.CHUNK_BYTES)
    assert not queueable(CHAT, huge)  # could never fit a batch


def test_chunks_keep_the_order_and_stay_under_the_payload_limit() -> None:
    lines = [chat_line(str(i), "x" * 1_000_000) for i in range(20)]
    chunks = plan_chunks(lines)
    assert [line.custom_id for chunk in chunks for line in chunk] == [str(i) for i in range(20)]
    assert len(chunks) == 3 and [len(c) for c in chunks] == [8, 8, 4]
    for chunk in chunks:
        native = [{**line.body, "external_reference": str(i)} for i, line in enumerate(chunk)]
        assert len(json.dumps({"requests": native})) < MAX_QUEUE_BYTES
        assert sum(len(json.dumps(line.body)) + batch_queue.LINE_SLACK for line in chunk) <= batch_queue.CHUNK_BYTES
    small = plan_chunks([chat_line(str(i), "hi") for i in range(2500)])
    assert [len(c) for c in small] == [1000, 1000, 500]
    assert plan_chunks([]) == []


# ---- submit and poll -----------------------------------------------------------------------------------------


async def test_a_chat_batch_runs_on_the_queue_with_one_line_failing_alone(offline: Settings) -> None:
    lines = [chat_line("first", "hello there"),
             chat_line("json", "hi [emulator:no-json]", response_format={"type": "json_object"}),  # JSON mode unmet
             chat_line("third", "how are you", max_tokens=3)]
    async with open_context(offline) as ctx:
        job = await submit(ctx, CHAT, LLAMA, lines)
        assert ctx.record.calls == 1 and ctx.record.upstream == "cloudflare"  # one upstream call, judged and charged
        outcomes, pending = await finish(ctx, job)
    assert pending == 2  # queued, running, then the answers
    assert [o.custom_id for o in outcomes] == ["first", "json", "third"]
    first, failed, third = outcomes
    assert first.status_code == 200 and first.error is None and first.body is not None
    validate(first.body, "CreateChatCompletionResponse")
    assert "You said: hello there" in first.body["choices"][0]["message"]["content"]
    assert third.body is not None and third.body["choices"][0]["finish_reason"] == "length"
    assert failed.status_code == 400 and failed.body is None
    assert failed.error == {"message": "Workers AI error 5006: JSON Mode couldn't be met",
                            "type": "invalid_request_error", "param": None, "code": None}
    assert first.usage.prompt_tokens == 2 and first.usage.completion_tokens > 0
    # The emulator bills the finished batch (cf-ai-neurons); each line gets its share, measured.
    assert first.usage.neurons and third.usage.neurons and not first.usage.neurons_estimated
    share = first.usage.neurons / (first.usage.neurons + third.usage.neurons)
    ratio = estimate_neurons(PUBLISHED_PRICES[LLAMA], Units(first.usage.prompt_tokens, first.usage.completion_tokens))
    other = estimate_neurons(PUBLISHED_PRICES[LLAMA], Units(third.usage.prompt_tokens, third.usage.completion_tokens))
    assert share == pytest.approx(ratio / (ratio + other), rel=1e-4)
    assert failed.usage.neurons is None and failed.usage.prompt_tokens == 0


async def test_an_embeddings_batch_with_a_line_too_long_for_the_model(offline: Settings) -> None:
    lines = [QueuedLine(custom_id="ok", body={"model": BGE, "input": ["cats purr", "dogs bark"],
                                              "dimensions": 128}),
             QueuedLine(custom_id="long", body={"model": BGE, "input": "word " * 600})]
    async with open_context(offline) as ctx:
        job = await submit(ctx, EMBED, BGE, lines)
        (ok, long), _ = await finish(ctx, job)
    assert ok.body is not None
    validate(ok.body, "CreateEmbeddingResponse")
    assert [d["index"] for d in ok.body["data"]] == [0, 1] and len(ok.body["data"][0]["embedding"]) == 128
    assert long.status_code == 400 and long.error is not None and "Sequence too long" in long.error["message"]
    # Embeddings report no neurons: estimated from published prices, as a live call's would be.
    assert ok.usage.neurons_estimated
    assert ok.usage.neurons == estimate_neurons(PUBLISHED_PRICES[BGE], Units(input_tokens=ok.usage.prompt_tokens))


async def test_a_completions_batch(offline: Settings) -> None:
    lines = [QueuedLine(custom_id="c", body={"model": LLAMA, "prompt": "Say hi", "echo": True})]
    async with open_context(offline) as ctx:
        job = await submit(ctx, LEGACY, LLAMA, lines)
        (done,), _ = await finish(ctx, job)
    assert done.body is not None
    validate(done.body, "CreateCompletionResponse")
    assert done.body["choices"][0]["text"].startswith("Say hi") and done.body["object"] == "text_completion"


async def test_a_model_without_the_queue_is_refused_before_any_line_runs(offline: Settings) -> None:
    async with open_context(offline) as ctx:
        with pytest.raises(InvalidRequest) as refused:
            await submit(ctx, CHAT, SMALL, [chat_line("a", "hi", model=SMALL)])
    assert refused.value.status == 400 and refused.value.upstream_code == 5006
    assert "does not take queued requests" in refused.value.message


async def test_a_line_that_is_not_queueable_is_refused_by_submit(offline: Settings) -> None:
    async with open_context(offline) as ctx:
        with pytest.raises(InvalidRequest, match="'s2' cannot go on Workers AI's async batch") as refused:
            await submit(ctx, CHAT, LLAMA, [chat_line("s1", "hi"), chat_line("s2", "hi", stream=True)])
        with pytest.raises(InvalidRequest, match=r"cannot run on Workers AI's async batch"):
            await submit(ctx, "/v1/responses", LLAMA, [chat_line("s1", "hi")])
        assert ctx.record.calls == 0  # nothing sent
    assert refused.value.code == "not_queueable"


async def test_the_keys_model_policy_applies_to_the_batch(offline: Settings) -> None:
    async with open_context(offline) as ctx:
        limited = ctx.for_request(RequestRecord(key_id="k1", model_patterns=("@cf/baai/*",)))
        with pytest.raises(PermissionDenied):
            await submit(limited, CHAT, LLAMA, [chat_line("a", "hi")])
        job = await submit(limited, EMBED, BGE, [QueuedLine(custom_id="e", body={"model": BGE, "input": "x"})])
    assert job.key_id == "k1"


async def test_a_job_read_back_after_a_restart_is_polled_by_a_fresh_context(offline: Settings) -> None:
    async with open_context(offline) as ctx:
        job = await submit(ctx, CHAT, LLAMA, [chat_line("a", "before the restart")])
        assert await poll(ctx, job) is None  # queued
    stored = job.model_dump_json()
    async with open_context(offline) as fresh:  # a new process: new clients, a new emulator app
        again = QueuedJob.model_validate_json(stored)
        assert again == job
        outcomes, pending = await finish(fresh, again)
    assert pending == 1  # running, then done: the queue kept its place
    assert outcomes[0].body is not None and "before the restart" in outcomes[0].body["choices"][0]["message"]["content"]


async def test_polling_a_batch_the_account_does_not_know_is_a_final_client_error(offline: Settings) -> None:
    async with open_context(offline) as ctx:
        job = await submit(ctx, EMBED, BGE, [QueuedLine(custom_id="e", body={"model": BGE, "input": "x"})])
        with pytest.raises(InvalidRequest, match="no queued request"):
            await poll(ctx, job.model_copy(update={"request_id": "00000000-0000-4000-8000-000000000000"}))
        with pytest.raises(UpstreamError, match="'gone' that accepted it is no longer configured"):
            await poll(ctx, job.model_copy(update={"account": "gone"}))


# ---- the account a job is pinned to ---------------------------------------------------------------------------


@pytest.fixture
async def two_accounts(tmp_path: Path) -> AsyncIterator[tuple[Context, list[str]]]:
    """A Context on two Cloudflare accounts in front of one emulator; the main account refuses to queue (out of
    capacity, 3040). Yields the context and the account id of each queue request, in order."""
    (tmp_path / "config.toml").write_text(f'[upstreams.backup]\ntype = "cloudflare"\naccount_id = "{BACKUP}"\n'
                                          'api_token = "backup-token"\n')
    settings = load_settings({"account_id": MAIN, "api_token": "main-token", "max_retries": 0},
                             environ={"CFAI_HOME": str(tmp_path)})
    emulator = httpx.ASGITransport(app=create_emulator_app())
    seen: list[str] = []

    async def workers(request: httpx.Request) -> httpx.Response:
        account = request.url.path.split("/accounts/")[1].split("/")[0]
        seen.append(account)
        if account == MAIN and b'"requests"' in request.content:
            return httpx.Response(429, json={"success": False, "result": {}, "messages": [],
                                             "errors": [{"code": 3040, "message": "AiError: Out of capacity"}]})
        path = request.url.raw_path.replace(f"/accounts/{account}/".encode(), b"/accounts/offline/")
        forwarded = httpx.Request(request.method, request.url.copy_with(raw_path=path), headers=request.headers,
                                  content=request.content)
        answer = await emulator.handle_async_request(forwarded)
        return httpx.Response(answer.status_code, headers=answer.headers, content=await answer.aread())

    async with open_context(settings, transport=httpx.MockTransport(workers)) as ctx:
        yield ctx, seen


async def test_a_job_is_pinned_to_the_account_that_accepted_it(two_accounts: tuple[Context, list[str]]) -> None:
    ctx, seen = two_accounts
    job = await submit(ctx, EMBED, BGE, [QueuedLine(custom_id="e", body={"model": BGE, "input": "pinned"})])
    assert job.account == "backup" and seen == [MAIN, BACKUP]  # failed over, like a live call
    (outcome,), _ = await finish(ctx, job)
    assert seen[2:] == [BACKUP] * 3  # every poll went to the account that holds the batch
    assert outcome.status_code == 200


async def test_queue_payloads_of_ten_megabytes_are_refused_before_sending(
        two_accounts: tuple[Context, list[str]]) -> None:
    ctx, seen = two_accounts
    lines = [QueuedLine(custom_id=str(i), body={"model": BGE, "input": "y" * 60_000}) for i in range(170)]
    with pytest.raises(RequestTooLarge):  # bypassing plan_chunks: the client still holds the limit
        await submit(ctx, EMBED, BGE, lines)
    assert seen == []


# ---- accounting ------------------------------------------------------------------------------------------------


async def test_each_line_leaves_a_usage_row_for_the_key(offline: Settings, tmp_path: Path) -> None:
    lines = [chat_line("a", "hello there"),
             chat_line("b", "hi [emulator:no-json]", response_format={"type": "json_object"})]
    async with open_context(offline) as ctx:
        keyed = ctx.for_request(RequestRecord(key_id="key-7"))
        job = await submit(keyed, CHAT, LLAMA, lines)
        outcomes, _ = await finish(ctx, job)
    log = UsageLog(tmp_path / "usage.db")
    log.write(usage_rows(job, outcomes, now=job.submitted_at + 2.5))
    rows = log.rows(since=0)
    assert [(r.key_id, r.route, r.model, r.status, r.upstream, r.account) for r in rows] == [
        ("key-7", "chat/completions", LLAMA, 200, "cloudflare", "cloudflare"),
        ("key-7", "chat/completions", LLAMA, 400, "cloudflare", "cloudflare")]
    ok, failed = rows
    assert (ok.prompt_tokens, ok.completion_tokens) == (outcomes[0].usage.prompt_tokens,
                                                        outcomes[0].usage.completion_tokens)
    assert ok.neurons == outcomes[0].usage.neurons and ok.cost_usd and not ok.neurons_estimated
    assert ok.latency_ms == 2500.0 and ok.error_code is None and ok.bytes_out > ok.bytes_in > 0
    assert failed.neurons is None and failed.error_code == "invalid_request_error"
    summary = log.summarise(since=0, by="key")
    assert summary[0].group == "key-7" and summary[0].requests == 2 and summary[0].errors == 1
