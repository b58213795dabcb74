"""Batches whose lines go on Workers AI's async queue, through the real `openai` SDK against the in-process proxy
and the offline emulator (which queues llama-3.3-70b fp8-fast and bge, and not llama-3.1-8b): a mixed batch
answers every custom_id with the queued lines provably queued, a restart with a job in flight polls the stored
job instead of sending it again, a job the upstream forgot runs live once, cancel keeps a submitted job's
answers, and every queued line leaves its usage row and settles its budget hold."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import time
from dataclasses import replace
from typing import Any

import httpx
import openai
import pytest

from cfai_cli.emulator import queue as emulator_queue
from cfai_cli.settings import Settings
from cfai_cli.store.budgets import BudgetLedger
from cfai_cli.store.retention import prune, retention_of
from tests.server.test_batches_sdk import (
    CHAT,
    both_engines,
    chat_line,
    final,
    jsonl,
    make_key,
    outputs,
    sdk,
    store_of,
    submit,
    until,
)

pytestmark = pytest.mark.anyio
QUEUED = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"


class Counting(httpx.AsyncBaseTransport):
    """The real emulator, counting what reaches it: queue submissions, polls and live runs; `hold_polls` makes
    polls wait (a slow queue) until `release` is set."""

    def __init__(self, *, hold_polls: bool = False, fail_polls: bool = False) -> None:
        from cfai_cli.emulator import create_emulator_app

        self.inner = httpx.ASGITransport(app=create_emulator_app())
        self.submits: list[int] = []  # requests per submitted job
        self.polls = 0
        self.live: list[str] = []  # model of each live run
        self.hold_polls = hold_polls
        self.fail_polls = fail_polls  # the account answers every poll with a 500
        self.release = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if "/ai/run/" in path:
            model = path.split("/ai/run/", 1)[1]
            body = json.loads(request.content or b"{}")
            if request.url.params.get("queueRequest") == "true" and "requests" in body:
                self.submits.append(len(body["requests"]))
            elif "request_id" in body:
                self.polls += 1
                if self.hold_polls:
                    await self.release.wait()
                if self.fail_polls:
                    return httpx.Response(500, json={"success": False, "result": None,
                                                     "errors": [{"code": 3043, "message": "internal error"}]})
            else:
                self.live.append(model)
        return await self.inner.handle_async_request(request)


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return replace(settings, batch_concurrency=2, batch_queue_poll=0.005, batch_queue_poll_max=0.02,
                   store=store_of(request))


def usage_rows(settings: Settings) -> list[tuple[Any, ...]]:
    with sqlite3.connect(settings.database) as conn:
        return conn.execute("SELECT key_id, route, model, status, prompt_tokens, neurons FROM usage_log "
                            "ORDER BY rowid").fetchall()


async def wait_usage(settings: Settings, count: int) -> list[tuple[Any, ...]]:
    for _ in range(200):  # the proxy's recorder writes usage rows in the background
        try:
            rows = usage_rows(settings)
        except sqlite3.OperationalError:
            rows = []
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.02)
    raise AssertionError(usage_rows(settings))


async def test_a_mixed_batch_queues_the_queue_models_lines_and_runs_the_rest_live(settings: Settings) -> None:
    key = make_key(settings, models=("gpt-4o-mini", "@cf/meta/llama-3.3-*"), budget_neurons_per_day=1e6)
    lines = [chat_line("q-1", model=QUEUED), chat_line("live-1"), chat_line("q-2", model=QUEUED, max_tokens=20),
             chat_line("forbidden", model="@cf/qwen/qwq-32b"),
             {**chat_line("invalid"), "body": {"model": QUEUED, "messages": "not a list"}},
             chat_line("q-3", model=QUEUED, temperature=0)]
    upstream = Counting()
    async with sdk(settings, key, upstream) as client:  # type: ignore[arg-type]
        batch = await submit(client, lines)
        done = await until(client, batch.id, final)
        good, bad = await outputs(client, done.output_file_id), await outputs(client, done.error_file_id)
    assert done.status == "completed"
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (6, 4, 2)
    assert sorted(line["custom_id"] for line in good) == ["live-1", "q-1", "q-2", "q-3"]
    answers = {line["custom_id"]: line["response"]["body"] for line in good}
    assert all(answers[c]["object"] == "chat.completion" and answers[c]["model"] == QUEUED for c in ("q-1", "q-2"))
    errors = {line["custom_id"]: line["response"] for line in bad}
    assert errors["forbidden"]["status_code"] == 403 and errors["invalid"]["status_code"] == 400
    # One upstream job holds the three queued lines; only the gpt-4o-mini line ran live, the forbidden and
    # invalid lines reached no upstream at all.
    assert upstream.submits == [3] and upstream.polls >= 3
    assert upstream.live == ["@cf/meta/llama-3.1-8b-instruct-fast"]
    rows = await wait_usage(settings, 4)
    queued_rows = [r for r in rows if r[2] == QUEUED and r[3] == 200]
    assert len(queued_rows) == 3 and all(r[1] == "batch/chat/completions" and r[0] is not None for r in queued_rows)
    assert all(r[4] > 0 and r[5] for r in queued_rows)  # tokens and neurons per line
    ledger = BudgetLedger(settings.database)
    key_id = queued_rows[0][0]
    assert ledger.held(key_id, now=time.time()) == 0  # every hold settled
    assert ledger.spent(key_id, now=time.time())[0] > 0


@both_engines
async def test_a_restart_with_a_job_in_flight_polls_the_stored_job(settings: Settings) -> None:
    key = make_key(settings)
    first = Counting(hold_polls=True)
    async with sdk(settings, key, first) as client:  # type: ignore[arg-type]
        batch = await submit(client, [chat_line(f"q{i}", model=QUEUED) for i in range(3)])
        for _ in range(500):
            if first.polls:
                break
            await asyncio.sleep(0.01)
        assert first.submits == [3]
    # The server stopped while polling; the new one finds the stored job and polls it (no second submission).
    second = Counting()
    async with sdk(settings, key, second) as client:  # type: ignore[arg-type]
        done = await until(client, batch.id, final)
        good = await outputs(client, done.output_file_id)
    assert done.status == "completed" and done.request_counts.completed == 3
    assert second.submits == [] and second.live == [] and second.polls >= 1
    assert sorted(line["custom_id"] for line in good) == ["q0", "q1", "q2"]


async def test_a_job_the_upstream_forgot_runs_its_lines_live_once(settings: Settings) -> None:
    key = make_key(settings)
    first = Counting(hold_polls=True)
    async with sdk(settings, key, first) as client:  # type: ignore[arg-type]
        batch = await submit(client, [chat_line(f"q{i}", model=QUEUED) for i in range(3)])
        for _ in range(500):
            if first.polls:
                break
            await asyncio.sleep(0.01)
    emulator_queue._BATCHES.clear()  # Workers AI restarted: it knows no queued job
    second = Counting()
    async with sdk(settings, key, second) as client:  # type: ignore[arg-type]
        done = await until(client, batch.id, final)
        good = await outputs(client, done.output_file_id)
    assert done.status == "completed" and done.request_counts.completed == 3
    assert second.submits == [] and second.live == [QUEUED] * 3
    assert sorted(line["custom_id"] for line in good) == ["q0", "q1", "q2"]


async def test_cancel_keeps_the_answers_of_a_job_already_submitted(settings: Settings) -> None:
    key = make_key(settings)
    upstream = Counting(hold_polls=True)
    async with sdk(settings, key, upstream) as client:  # type: ignore[arg-type]
        batch = await submit(client, [chat_line(f"q{i}", model=QUEUED) for i in range(2)])
        for _ in range(500):
            if upstream.polls:
                break
            await asyncio.sleep(0.01)
        cancelling = await client.batches.cancel(batch.id)
        assert cancelling.status == "cancelling"
        upstream.release.set()
        done = await until(client, batch.id, final)
        good = await outputs(client, done.output_file_id)
    assert done.status == "cancelled" and upstream.submits == [2]
    assert sorted(line["custom_id"] for line in good) == ["q0", "q1"]


async def test_polls_failing_past_the_bound_fail_the_jobs_lines(settings: Settings) -> None:
    key = make_key(settings)
    upstream = Counting(fail_polls=True)
    async with sdk(replace(settings, batch_queue_poll_failures=3, max_retries=0), key, upstream) as client:  # type: ignore[arg-type]
        batch = await submit(client, [chat_line(f"q{i}", model=QUEUED) for i in range(2)])
        done = await until(client, batch.id, final)
        bad = await outputs(client, done.error_file_id)
    assert done.status == "completed" and done.request_counts.failed == 2
    assert upstream.submits == [2] and upstream.polls == 3 and upstream.live == []
    assert {line["response"]["status_code"] for line in bad} == {502}


async def test_embeddings_lines_go_on_the_queue(settings: Settings) -> None:
    key = make_key(settings)
    lines = [{"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
              "body": {"model": "@cf/baai/bge-small-en-v1.5", "input": f"text {i}"}} for i in range(2)]
    upstream = Counting()
    async with sdk(settings, key, upstream) as client:  # type: ignore[arg-type]
        batch = await submit(client, lines, endpoint="/v1/embeddings")
        done = await until(client, batch.id, final)
        good = await outputs(client, done.output_file_id)
    assert done.status == "completed" and upstream.submits == [2] and upstream.live == []
    assert all(line["response"]["body"]["object"] == "list" for line in good)


async def test_the_setting_off_runs_every_line_live(settings: Settings) -> None:
    key = make_key(settings)
    upstream = Counting()
    async with sdk(replace(settings, batch_queue=False), key, upstream) as client:  # type: ignore[arg-type]
        batch = await submit(client, [chat_line("q0", model=QUEUED)])
        done = await until(client, batch.id, final)
    assert done.request_counts.completed == 1 and upstream.submits == [] and upstream.live == [QUEUED]



@both_engines
async def test_retention_prunes_old_batches_and_expired_uploads_but_nothing_in_flight(settings: Settings) -> None:
    key = make_key(settings)
    upstream = Counting(hold_polls=True)
    async with sdk(settings, key, upstream) as client:  # type: ignore[arg-type]
        old = await until(client, (await submit(client, [chat_line("a")])).id, final)
        # In flight (its polls are held), its input file past its own expiry by then: neither may go.
        source = await client.files.create(file=jsonl([chat_line("q", model=QUEUED)]), purpose="batch",
                                           expires_after={"anchor": "created_at", "seconds": 3600})
        running = await client.batches.create(input_file_id=source.id, endpoint=CHAT, completion_window="24h")
        await until(client, running.id, lambda b: upstream.polls > 0)
        expiring = await client.files.create(file=("n.txt", io.BytesIO(b"x")), purpose="user_data",
                                             expires_after={"anchor": "created_at", "seconds": 3600})
        kept = await client.files.create(file=("k.txt", io.BytesIO(b"y")), purpose="user_data")
        assert expiring.expires_at == expiring.created_at + 3600 and kept.expires_at is None
        with pytest.raises(openai.BadRequestError) as refused:
            await client.files.create(file=("n.txt", io.BytesIO(b"x")), purpose="user_data",
                                      expires_after={"anchor": "created_at", "seconds": 5})
        assert refused.value.body["param"] == "expires_after"  # type: ignore[index]
        later = time.time() + 31 * 86400  # past the default 30 days, and past the upload's hour
        pruned = prune(settings.database, retention_of(settings), now=later, store=settings.storage)
        assert (pruned.batches, pruned.files) == (1, 2)  # the old batch with its output file, and the upload
        for gone in (old.id,):
            with pytest.raises(openai.NotFoundError):
                await client.batches.retrieve(gone)
        for file_id in (old.output_file_id, expiring.id):
            with pytest.raises(openai.NotFoundError):
                await client.files.retrieve(file_id)
            assert not (settings.files_dir / file_id).exists()
        assert (await client.batches.retrieve(running.id)).status == "in_progress"
        assert (await client.files.retrieve(running.input_file_id)).id == running.input_file_id
        assert (await client.files.retrieve(kept.id)).id == kept.id
        upstream.release.set()
        assert (await until(client, running.id, final)).status == "completed"


async def test_a_chunk_the_budget_cannot_hold_is_not_queued(settings: Settings) -> None:
    key = make_key(settings, budget_neurons_per_day=0.000001)
    upstream = Counting()
    async with sdk(settings, key, upstream) as client:  # type: ignore[arg-type]
        done = await until(client, (await submit(client, [chat_line(f"q{i}", model=QUEUED) for i in range(2)])).id,
                           final)
        bad = await outputs(client, done.error_file_id)
    assert upstream.submits == [] and upstream.live == []  # the hold refused it before any upstream call
    assert done.request_counts.failed == 2
    assert {line["response"]["body"]["error"]["code"] for line in bad} == {"insufficient_quota"}
