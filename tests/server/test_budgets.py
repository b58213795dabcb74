"""Per-key budgets through HTTP: refused with 429 insufficient_quota once the key's recorded spend reaches its
budget (neurons per UTC day, USD per calendar month), across two workers sharing one database, under
concurrency (only the requests already in flight may go over), in OpenAI's and Anthropic's words."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import openai
import pytest

from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings
from cfai_cli.store.budgets import BudgetLedger
from cfai_cli.store.keys import KeyPolicy, KeyStore
from tests.fake_workers import envelope
from tests.openai_schema import validate
from tests.sdk import offline_raw, offline_sdk

pytestmark = pytest.mark.anyio

MODEL = "@cf/meta/llama-3.1-8b-instruct"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
COST = 10.0  # neurons the fake Workers AI bills each call (cf-ai-neurons)


class Billing:
    """A Workers AI that bills COST neurons a call; with `gate` set, calls wait for it (requests in flight)."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.waiting = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/ai/models/search"):  # the catalogue (the Messages API reads it): no call
            return httpx.Response(200, json={**envelope([]), "result_info": {}})
        self.calls += 1
        if self.gate is not None:
            self.waiting += 1
            await self.gate.wait()
        json.loads(request.content)
        usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        return httpx.Response(200, json=envelope({"response": "ok", "usage": usage}),
                              headers={"cf-ai-neurons": str(COST)})


def budgeted(settings: Settings, **policy: Any) -> tuple[str, str]:
    key, record = KeyStore(settings.database).create("budgeted", KeyPolicy(**policy))
    return key, record.id


@asynccontextmanager
async def workers(settings: Settings, billing: Billing, key: str, count: int = 2
                  ) -> AsyncIterator[list[httpx.AsyncClient]]:
    """`count` apps on one database, as uvicorn workers are (each its own middleware, caches and ledger)."""
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(count):
            app = create_app(settings, transport=httpx.MockTransport(billing))
            await stack.enter_async_context(app.router.lifespan_context(app))
            clients.append(await stack.enter_async_context(httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://proxy.test",
                headers={"Authorization": f"Bearer {key}"})))
        yield clients


def refusal(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 429, answer.text
    validate(answer.json(), "ErrorResponse")
    error: dict[str, Any] = answer.json()["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
    assert int(answer.headers["retry-after"]) >= 1
    return error


async def warm(client: httpx.AsyncClient, settings: Settings) -> None:
    """One settled request of MODEL by another budgeted key: the model's mean cost per call is then known."""
    other, _ = budgeted(settings, budget_neurons_per_day=1e9)
    answer = await client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {other}"})
    assert answer.status_code == 200


async def test_a_day_budget_admits_only_what_fits_across_two_workers(settings: Settings) -> None:
    key, key_id = budgeted(settings, budget_neurons_per_day=25)
    billing = Billing()
    async with workers(settings, billing, key) as (first, second):
        # The first request holds its estimate from prices (a few neurons: it fits); from then on the model's
        # mean (10) is known: 10 + 10 <= 25 is admitted by the other worker, 20 + 10 > 25 is refused by either.
        for client in (first, second):
            answer = await client.post("/v1/chat/completions", json=CHAT)
            assert answer.status_code == 200 and answer.headers["x-cfai-neurons"] == "10"
        assert BudgetLedger(settings.database).spent(key_id, now=time.time())[0] == 20
        for client in (first, second):
            error = refusal(await client.post("/v1/chat/completions", json=CHAT))
            assert "estimated at 10.00 neurons" in error["message"] and "does not fit" in error["message"]
            assert "25 neurons per day" in error["message"] and "20.00 spent today" in error["message"]
            assert "resets at" in error["message"] and "00:00 UTC" in error["message"]
        assert billing.calls == 2  # refused before any upstream call
        assert (await first.get(f"/v1/route-check?model={MODEL}")).status_code == 200  # spends nothing: served
        assert BudgetLedger(settings.database).held(key_id, now=time.time()) == 0


async def test_a_budget_spent_to_the_neuron_refuses_at_the_door(settings: Settings) -> None:
    key, _ = budgeted(settings, budget_neurons_per_day=30)
    billing = Billing()
    async with workers(settings, billing, key) as (first, second):
        for client in (first, second, first):
            assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
        error = refusal(await second.post("/v1/chat/completions", json=CHAT))
        assert "has used its budget of 30 neurons per day (30.00 spent today)" in error["message"]
        assert billing.calls == 3


async def test_requests_in_flight_hold_their_estimate_so_concurrency_cannot_overshoot(settings: Settings) -> None:
    key, key_id = budgeted(settings, budget_neurons_per_day=50)
    billing = Billing()
    async with workers(settings, billing, key) as (first, second):
        await warm(first, settings)
        billing.gate = asyncio.Event()
        # Twelve at once on two workers: five hold 10 each (50: the budget), the other seven are refused at
        # once, while the five are still waiting on Workers AI.
        flying = [asyncio.ensure_future(c.post("/v1/chat/completions", json=CHAT)) for c in (first, second) * 6]
        # The refused answer at once, but an admitted request may still be on its way to Workers AI: wait
        # (bounded) until both have happened, then check that exactly five got through and seven did not.
        deadline = time.monotonic() + 30
        while (sum(f.done() for f in flying) < 7 or billing.waiting < 5) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert billing.waiting == 5 and sum(f.done() for f in flying) == 7
        assert BudgetLedger(settings.database).held(key_id, now=time.time()) == 50
        billing.gate.set()
        answers = await asyncio.gather(*flying)
        assert sorted(a.status_code for a in answers) == [200] * 5 + [429] * 7
        for answer in answers:
            if answer.status_code != 200:
                refusal(answer)
        ledger = BudgetLedger(settings.database)
        assert ledger.spent(key_id, now=time.time())[0] == 50 and ledger.held(key_id, now=time.time()) == 0
        billing.gate = None
        late = await asyncio.gather(*(c.post("/v1/chat/completions", json=CHAT) for c in (first, second) * 3))
        for answer in late:
            refusal(answer)
        assert billing.calls == 1 + 5


async def test_a_cold_models_estimate_counts_the_prompt_and_the_answer_it_may_get(settings: Settings) -> None:
    # No request of MODEL settled yet: a call is held at its published prices ($0.282 / $0.827 per M tokens),
    # its prompt counted and its answer at 256 tokens, or its own smaller max_tokens: about 19.4 neurons
    # for "hi" without max_tokens, about 1.4 with max_tokens 16.
    key, _ = budgeted(settings, budget_neurons_per_day=15)
    billing = Billing()
    async with workers(settings, billing, key, count=1) as (client,):
        error = refusal(await client.post("/v1/chat/completions", json=CHAT))
        estimate = float(error["message"].split("estimated at ")[1].split(" ")[0])
        assert 19 < estimate < 20 and billing.calls == 0
        claude = await client.post("/v1/messages", headers={"anthropic-version": "2023-06-01"},
                                   json={"model": MODEL, "max_tokens": 1024,
                                         "messages": [{"role": "user", "content": "hi"}]})
        assert claude.status_code == 429 and "estimated at 19." in claude.json()["error"]["message"]
        assert (await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 16})).status_code == 200
        assert billing.calls == 1


async def test_a_month_budget_in_dollars_and_the_anthropic_body(settings: Settings) -> None:
    # 10 neurons = $0.00011: two calls ($0.00022) fill a budget of $0.00022 exactly.
    key, _ = budgeted(settings, budget_usd_per_month=0.00022)
    billing = Billing()
    async with workers(settings, billing, key, count=1) as (client,):
        for _ in range(2):
            assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
        error = refusal(await client.post("/v1/chat/completions", json=CHAT))
        assert "$0.00022 per month" in error["message"] and "-01 00:00 UTC" in error["message"]
        anthropic = await client.post("/v1/messages", headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                                      json={"model": MODEL, "max_tokens": 16,
                                            "messages": [{"role": "user", "content": "hi"}]})
        assert anthropic.status_code == 429 and int(anthropic.headers["retry-after"]) >= 1
        body = anthropic.json()
        assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
        assert "per month" in body["error"]["message"]
        assert billing.calls == 2


async def test_a_key_without_a_budget_is_not_counted_or_refused(settings: Settings) -> None:
    key, key_id = budgeted(settings)
    billing = Billing()
    async with workers(settings, billing, key, count=1) as (client,):
        for _ in range(4):
            assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    assert BudgetLedger(settings.database).spent(key_id, now=time.time()) == (0.0, 0.0)


async def test_offline_emulator_bills_and_the_sdk_sees_insufficient_quota(settings: Settings) -> None:
    store = KeyStore(settings.database)
    key, record = store.create("sdk")
    async with offline_raw(settings, key) as raw:  # what one answer costs at the emulator's prices
        probe = await raw.post("/chat/completions", json={**CHAT, "model": "gpt-4o-mini"})
        cost = float(probe.headers["x-cfai-neurons"])
        assert cost > 0 and probe.headers["x-cfai-neurons-source"] == "measured"
    # The probe was not counted (no budget then); three answers' worth: three are served, the fourth is refused
    # (its estimate, the model's mean, does not fit in what is left).
    store.update(record.id, policy=KeyPolicy(budget_neurons_per_day=cost * 3))
    async with offline_sdk(settings, key) as client:
        for _ in range(3):
            await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.RateLimitError) as refused:
            await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.code == "insufficient_quota" and "neurons per day" in refused.value.message


async def test_a_streams_estimated_cost_replaces_its_hold_at_its_end(settings: Settings) -> None:
    # The emulator's streams report no neurons: cfai estimates them at the stream's end (for a model in the
    # published prices), and that replaces what the stream held when it opened.
    store = KeyStore(settings.database)
    key, key_id = budgeted(settings, budget_neurons_per_day=1000)
    priced = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
    async with offline_raw(settings, key) as raw:
        stream = await raw.post("/chat/completions", json={**CHAT, "model": priced, "stream": True})
        assert stream.status_code == 200 and "data: [DONE]" in stream.text
        ledger = BudgetLedger(settings.database)
        today, _ = ledger.spent(key_id, now=time.time())
        assert today > 0 and ledger.held(key_id, now=time.time()) == 0
        store.update(key_id, policy=KeyPolicy(budget_neurons_per_day=today))  # spent to the neuron
        refusal(await raw.post("/chat/completions", json={**CHAT, "model": priced, "stream": True}))


async def test_the_spend_is_recorded_before_the_answer_ends(settings: Settings) -> None:
    # A client that has the whole answer may send its next request at once (to any worker): the ledger must
    # already have this one's cost, so the check happens as the last body message leaves the app.
    key, key_id = budgeted(settings, budget_neurons_per_day=1000)
    app = create_app(settings, transport=httpx.MockTransport(Billing()))
    seen: list[float] = []

    async def outside(scope: Any, receive: Any, send: Any) -> None:
        async def watching(message: Any) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                seen.append(BudgetLedger(settings.database).spent(key_id, now=time.time())[0])
            await send(message)

        await app(scope, receive, watching if scope["type"] == "http" else send)

    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=outside), base_url="http://proxy.test",
            headers={"Authorization": f"Bearer {key}"}) as client:
        for _ in range(2):
            assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    assert seen == [COST, 2 * COST]


async def test_out_of_budget_a_key_may_still_count_tokens_and_read_what_is_stored(settings: Settings) -> None:
    """Only requests that run a model are refused: counting tokens (OpenAI's /v1/tokenize, Anthropic's
    count_tokens, which Claude Code calls) and reading stored responses spend nothing (docs/cost.md)."""
    key, _ = budgeted(settings, budget_neurons_per_day=5)
    billing = Billing()
    async with workers(settings, billing, key, count=1) as (client,):
        first = await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 16})  # held ~1.4: fits
        assert first.status_code == 200  # and cost 10 >= 5: spent
        refusal(await client.post("/v1/chat/completions", json=CHAT))
        counted = await client.post("/v1/tokenize", json={"model": MODEL, "input": "hi"})
        assert counted.status_code == 200, counted.text
        claude = await client.post("/v1/messages/count_tokens", headers={"anthropic-version": "2023-06-01"},
                                   json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
        assert claude.status_code == 200 and claude.json()["input_tokens"] > 0, claude.text
        assert (await client.get("/v1/responses/resp_missing")).status_code == 404  # judged, not refused
        assert billing.calls == 1
