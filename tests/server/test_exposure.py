"""Nothing a stranger can grow or read: metric labels, usage rows, cooldown entries stay bounded under floods,
/health tells strangers only up/down, and old usage rows and stored responses are deleted.

Every probe goes through HTTP against the in-process app (auth on, unless said otherwise).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from cfai_cli.server.app import create_app
from cfai_cli.server.recorder import UsageRecorder
from cfai_cli.settings import Settings
from cfai_cli.store.keys import SCOPES, KeyPolicy, KeyStore
from cfai_cli.store.responses import ResponseStore
from cfai_cli.store.usage import UsageLog, UsageRow
from tests.fake_workers import CATALOGUE, FakeWorkers, error_envelope, native_text
from tests.openai_schema import validate

pytestmark = pytest.mark.anyio

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@asynccontextmanager
async def running(settings: Settings, transport: httpx.AsyncBaseTransport | None = None,
                  **options: Any) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    app = create_app(settings if transport else settings.as_offline(), transport=transport, **options)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        yield app, client


def key(settings: Settings, *scopes: str) -> dict[str, str]:
    policy = KeyPolicy(scopes=frozenset(scopes)) if scopes else KeyPolicy()
    made, _ = KeyStore(settings.database).create("t", policy)
    return {"Authorization": f"Bearer {made}"}


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


# ---- metrics and the usage log under floods ------------------------------------------------------------


async def test_a_path_and_garbage_key_flood_grows_neither_labels_nor_usage_rows(settings: Settings) -> None:
    user, admin = key(settings), key(settings, *SCOPES)
    async with running(settings) as (app, client):
        templates = {route.path for route in app.routes}
        answers = await asyncio.gather(
            *(client.get(f"/random-{i}/{'x' * i}") for i in range(60)),  # no key at all
            *(client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer sk-cfai-{i}"})
              for i in range(60)),  # garbage keys
            *(client.get(f"/v1/nothing-{i}", headers=user) for i in range(30)),  # a real key, no such route
            *(client.get(f"/v1/models/garbage-{i}", headers=user) for i in range(30)))
        statuses = [a.status_code for a in answers]
        assert statuses.count(401) == 120 and statuses.count(404) == 60 and max(statuses) < 500
        scraped = await client.get("/metrics", headers=admin)
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    found = families(scraped.text)
    samples = found["cfai_requests"].samples
    assert {s.labels["route"] for s in samples} <= templates | {"unmatched"}
    assert len(samples) <= 4  # (unmatched, 401), (chat, 401), (unmatched, 404), (models/{model}, 404)
    latency_routes = {s.labels["route"] for s in found["cfai_request_duration_seconds"].samples}
    assert latency_routes <= templates | {"unmatched"}
    (unauthenticated,) = found["cfai_unauthenticated"].samples
    assert unauthenticated.value == 120
    rows = UsageLog(settings.database).rows(since=0)
    assert len(rows) == 60 and all(r.key_id is not None for r in rows)  # only the requests made with a key
    assert {r.route for r in rows} == {"unmatched", "models"}


async def test_rows_in_a_write_under_way_at_shutdown_are_in_the_log_when_the_server_has_stopped(
        settings: Settings) -> None:
    """The recorder's periodic write runs in a thread; stopping must wait for it, not cancel the wait (the thread
    would go on writing after the shutdown, and the final flush find the queue already empty)."""
    entered, release = threading.Event(), threading.Event()

    class HeldFirstWrite(UsageLog):
        def write(self, rows: list[UsageRow]) -> None:
            if not entered.is_set():  # the loop's first write waits until the test lets it go
                entered.set()
                release.wait(10)
            super().write(rows)

    def row(n: int) -> UsageRow:
        return UsageRow(ts=time.time(), key_id=f"key_{n}", route="chat/completions", model="m", upstream_model="m",
                        status=200, prompt_tokens=n, completion_tokens=1, latency_ms=1.0, bytes_in=1, bytes_out=1,
                        error_code=None, upstream="workers-ai", cache=None, neurons=None, neurons_estimated=False,
                        cost_usd=None, account=None)

    recorder = UsageRecorder(HeldFirstWrite(settings.database), interval=0.01)
    recorder.start()
    recorder.add(row(1))
    assert await anyio.to_thread.run_sync(entered.wait, 10)  # the loop has taken row 1 and is writing it
    recorder.add(row(2))
    stopping = asyncio.get_running_loop().create_task(recorder.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # waiting for the write under way
    release.set()
    await stopping
    assert sorted(r.prompt_tokens for r in UsageLog(settings.database).rows(since=0)) == [1, 2]
    assert recorder.lost == 0


async def test_a_refusal_of_a_valid_key_is_still_logged(settings: Settings) -> None:
    chat_only = key(settings, "chat")
    async with running(settings) as (_, client):
        refused = await client.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x"},
                                    headers=chat_only)
    assert refused.status_code == 403
    (row,) = UsageLog(settings.database).rows(since=0)
    assert row.status == 403 and row.key_id is not None and row.error_code == "insufficient_scope"


async def test_without_auth_every_request_is_logged(settings: Settings) -> None:
    async with running(settings, no_auth=True) as (_, client):
        await client.post("/v1/chat/completions", json=CHAT)
        await client.get("/v1/nothing")
    assert sorted(r.status for r in UsageLog(settings.database).rows(since=0)) == [200, 404]


async def test_client_strings_are_stored_without_control_characters(settings: Settings) -> None:
    user = key(settings)
    # JSON escapes (\u001b, \u202e, ...) decode to the control characters themselves: what is stored is the
    # decoded model name, so that is what must come out clean.
    raw = json.dumps({"model": "@cf/evil/\x1b]0;owned\x07m\u202eodel\x9b31m\x1b[31m",
                      "messages": [{"role": "user", "content": "hi"}]}).encode()
    async with running(settings) as (_, client):
        await client.post("/v1/chat/completions", content=raw, headers={**user, "Content-Type": "application/json"})
        form = httpx.Request("POST", "http://proxy.test/v1/audio/transcriptions", data={"model": "whisper\x1b[2J-1"},
                             files={"file": ("a.wav", b"RIFF", "audio/wav")})
        await client.post("/v1/audio/transcriptions", content=form.read(),  # in one piece
                          headers={**user, "Content-Type": form.headers["Content-Type"]})
    models = [r.model for r in UsageLog(settings.database).rows(since=0)]
    assert len(models) == 2
    for model in models:
        assert model is not None and len(model) <= 200
        assert not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f or c == "\u202e" for c in model)
    assert set(models) == {"whisper-1", "@cf/evil/model"}


# ---- /health -----------------------------------------------------------------------------------------


async def test_health_tells_a_stranger_only_up_and_each_upstreams_state(settings: Settings) -> None:
    user, admin = key(settings), key(settings, *SCOPES)
    async with running(settings) as (_, client):
        short = await client.get("/health")
        not_asked = await client.get("/health?detail=0")
        stranger = await client.get("/health?detail=1")
        wrong_key = await client.get("/health?detail=1", headers={"Authorization": "Bearer sk-cfai-nope"})
        not_admin = await client.get("/health?detail=1", headers=user)
        operator = await client.get("/health?detail=1", headers=admin)
    assert short.status_code == 200
    assert short.json() == not_asked.json() == {"status": "ok", "upstreams": [{"name": "cloudflare", "state": "ok"}]}
    for refused, status in ((stranger, 401), (wrong_key, 401), (not_admin, 403)):
        assert refused.status_code == status
        validate(refused.json(), "ErrorResponse")
    detail = operator.json()
    assert operator.status_code == 200 and detail["offline"] is True and "version" in detail
    assert detail["upstreams"][0]["keys"][0]["state"] == "ok" and "served" in detail["upstreams"][0]["keys"][0]


async def test_without_auth_health_detail_is_open(settings: Settings) -> None:
    async with running(settings, no_auth=True) as (_, client):
        detail = (await client.get("/health?detail=1")).json()
    assert detail["offline"] is True and "keys" in detail["upstreams"][0]


# ---- cooldown state: only for models the proxy knows ---------------------------------------------------

KNOWN = "@cf/meta/llama-3.1-8b-instruct-fast"  # gpt-4o-mini's target
LISTED = "@cf/qwen/in-the-catalogue"  # in the catalogue only


def failing_everywhere(fake: FakeWorkers) -> httpx.MockTransport:
    """A hostile Workers AI: a 500 for every model, whatever its name (except the catalogue)."""
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/ai/models/search"):
            return fake(request)
        return httpx.Response(500, json=error_envelope(1000, "internal error"))

    return httpx.MockTransport(handle)


async def test_a_flood_of_made_up_models_leaves_no_cooldown_entries(settings: Settings) -> None:
    user, admin = key(settings), key(settings, *SCOPES)
    fake = FakeWorkers(catalogue=[*CATALOGUE, {"name": LISTED, "task": {"name": "Text Generation"}}])
    flooding = replace(settings, max_retries=0, max_in_flight_per_key=1000)  # one key sends all 200 at once
    async with running(flooding, failing_everywhere(fake)) as (app, client):
        answers = await asyncio.gather(*(client.post(
            "/v1/chat/completions", json={**CHAT, "model": f"@cf/x/garbage-{i}"}, headers=user) for i in range(200)))
        assert {a.status_code for a in answers} == {502}
        lane = app.state.ctx.router.cooldowns.state("cloudflare")
        assert lane.resting == {} and lane.failures == 200
        # A model the proxy knows still rests after a failure: configured, or listed in the catalogue.
        await client.post("/v1/chat/completions", json=CHAT, headers=user)
        assert (await client.post("/v1/chat/completions", json={**CHAT, "model": LISTED}, headers=user)
                ).status_code == 502
        assert set(lane.resting) == {KNOWN}  # the catalogue was not fetched yet: LISTED is a guess
        assert (await client.get("/v1/models", headers=user)).status_code == 200
        await client.post("/v1/chat/completions", json={**CHAT, "model": LISTED}, headers=user)
        detail = (await client.get("/health?detail=1", headers=admin)).json()
    assert set(lane.resting) == {KNOWN, LISTED}
    assert set(detail["upstreams"][0]["keys"][0]["cooling_down_until"]) == {KNOWN, LISTED}


async def test_no_such_model_rests_nothing(settings: Settings) -> None:
    fake = FakeWorkers(models={KNOWN: native_text("hi")})  # anything else: 5007 "No such model"
    async with running(settings, fake.transport(), no_auth=True) as (app, client):
        answers = [await client.post("/v1/chat/completions", json={**CHAT, "model": f"@cf/x/nope-{i}"})
                   for i in range(20)]
        lane = app.state.ctx.router.cooldowns.state("cloudflare")
        assert {a.status_code for a in answers} == {404}
        assert lane.resting == {} and lane.failures == 0
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200


# ---- retention ---------------------------------------------------------------------------------------


def usage_row(age_days: float) -> UsageRow:
    return UsageRow(ts=time.time() - age_days * 86400, key_id="key_a", route="chat/completions", model="m",
                    upstream_model="m", status=200, prompt_tokens=1, completion_tokens=1, latency_ms=1.0,
                    bytes_in=1, bytes_out=1, error_code=None)


async def test_serve_deletes_old_rows_at_start_up(settings: Settings) -> None:
    UsageLog(settings.database).write([usage_row(120), usage_row(91), usage_row(10)])
    store = ResponseStore(settings.database)
    for rid, age in (("resp_old", 31), ("resp_new", 2)):
        store.save({"id": rid, "created_at": int(time.time() - age * 86400), "output": []}, [])
    async with running(replace(settings, responses_retention_days=30)) as (app, client):
        assert app.state.housekeeping.last is None  # the first pass waits for the server to be up and probed
        assert (await client.get("/health")).status_code == 200
        for _ in range(200):
            if app.state.housekeeping.last is not None:
                break
            await asyncio.sleep(0.01)
        pruned = app.state.housekeeping.last
    assert pruned is not None and (pruned.usage_rows, pruned.responses) == (2, 1)
    assert [round((time.time() - r.ts) / 86400) for r in UsageLog(settings.database).rows(since=0)] == [10]
    assert store.get("resp_old") is None and store.get("resp_new") is not None


async def test_route_check_shows_rests_and_errors_to_admins_only(settings: Settings) -> None:
    user, admin = key(settings), key(settings, *SCOPES)
    async with running(replace(settings, max_retries=0), failing_everywhere(FakeWorkers())) as (_, client):
        await client.post("/v1/chat/completions", json=CHAT, headers=user)
        seen_by_user = (await client.get("/v1/route-check?model=gpt-4o-mini", headers=user)).json()
        seen_by_admin = (await client.get("/v1/route-check?model=gpt-4o-mini", headers=admin)).json()
    assert seen_by_user["targets"][0]["keys"] == [{"key": 1, "state": "cooling_down"}]
    (operator_view,) = seen_by_admin["targets"][0]["keys"]
    assert operator_view["failures"] == 1 and "internal error" in operator_view["last_error"]["message"]
    assert KNOWN in operator_view["cooling_down_until"]
