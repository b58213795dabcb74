"""POST /v1/moderations through the real `openai` SDK (strict validation): the emulated Llama Guard offline, and a
fake Workers AI answering in the text shape; string, list and multi-modal input, aliases, errors, usage."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import httpx
import openai
import pytest

from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings
from cfai_cli.store.usage import UsageLog
from tests.fake_workers import FakeWorkers, envelope
from tests.openai_schema import validate
from tests.sdk import offline_raw, offline_sdk, sdk_httpx

pytestmark = pytest.mark.anyio

GUARD = "@cf/meta/llama-guard-3-8b"


async def test_string_input_flagged_and_safe(settings: Settings, api_key: str) -> None:
    async with offline_sdk(settings, api_key) as client:
        flagged = await client.moderations.create(input="Tell me how to build a bomb")
        safe = await client.moderations.create(input="How do I bake sourdough bread?")
    assert flagged.model == GUARD and flagged.id.startswith("modr-")
    result = flagged.results[0]
    assert result.flagged and result.categories.violence and result.categories.illicit_violent
    assert result.category_scores.violence == 1.0 and result.category_scores.sexual == 0.0
    assert result.category_applied_input_types.violence == ["text"]
    # cfai's extension survives the SDK's strict validation and stays readable.
    assert result.model_extra == {"cfai_guard_categories": ["S9"]}
    assert not safe.results[0].flagged and safe.results[0].model_extra == {"cfai_guard_categories": []}
    assert not any(safe.results[0].categories.model_dump().values())


async def test_list_input_keeps_order_and_validates(settings: Settings, api_key: str) -> None:
    texts = ["I want to kill myself", "nice weather", "where can I find a pirated copy", "I will murder them"]
    async with offline_raw(settings, api_key) as client:
        response = await client.post("/moderations", json={"model": "text-moderation-latest", "input": texts})
    assert response.status_code == 200, response.text
    body = response.json()
    validate(body, "CreateModerationResponse")
    assert [r["cfai_guard_categories"] for r in body["results"]] == [["S11"], [], ["S8"], ["S1"]]
    assert [r["flagged"] for r in body["results"]] == [True, False, True, True]
    assert body["results"][0]["categories"]["self-harm/intent"] is True


async def test_multimodal_input_is_one_result_from_its_text(settings: Settings, api_key: str) -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    async with offline_sdk(settings, api_key) as client:
        answer = await client.moderations.create(
            model="omni-moderation-latest",
            input=[{"type": "text", "text": "a photo of my cat"}, image,
                   {"type": "text", "text": "how to shoplift cat food"}])
        with pytest.raises(openai.BadRequestError) as caught:
            await client.moderations.create(input=[image])
    assert len(answer.results) == 1 and answer.results[0].model_extra == {"cfai_guard_categories": ["S2"]}
    assert answer.results[0].category_applied_input_types.self_harm == ["text"]  # images are not classified
    error = caught.value.body
    assert isinstance(error, dict) and error["param"] == "input" and error["code"] == "image_input_unsupported"


async def test_aliases_ids_and_config(settings: Settings, api_key: str) -> None:
    async with offline_sdk(settings, api_key) as client:
        for model in ("omni-moderation-2024-09-26", "text-moderation-stable", GUARD):
            assert (await client.moderations.create(model=model, input="hi")).model == GUARD
    # The [aliases] table re-points an alias (here at a model that is not a guard: a clear 400, not a crash).
    other = replace(settings, aliases={**settings.aliases, "omni-moderation-latest": "@cf/meta/llama-3.1-8b-instruct"})
    async with offline_raw(other, api_key) as client:
        response = await client.post("/moderations", json={"input": "hi"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "not_a_guard_model"
    assert response.json()["error"]["param"] == "model"


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"model": "nope-moderation", "input": "x"}, 404, "model"),
    ({"input": []}, 400, "input"),
    ({"input": [1, 2]}, 400, "input[0]"),
    ({"model": "omni-moderation-latest"}, 400, "input"),
    ({"input": ["a", {"type": "text", "text": "b"}]}, 400, "input[0]"),
    ({"input": ["x"] * 65}, 400, "input"),
])
async def test_errors_are_openai_bodies(settings: Settings, api_key: str, body: dict[str, Any], status: int,
                                        param: str) -> None:
    async with offline_raw(settings, api_key) as client:
        response = await client.post("/moderations", json=body)
    assert response.status_code == status, response.text
    validate(response.json(), "ErrorResponse")
    assert response.json()["error"]["param"] == param


async def test_unknown_model_through_the_sdk(settings: Settings, api_key: str) -> None:
    async with offline_sdk(settings, api_key) as client:
        with pytest.raises(openai.NotFoundError):
            await client.moderations.create(model="omni-moderation-nope", input="x")


def guard_text(delay: float = 0.0) -> Any:
    """A fake Llama Guard answering in the text shape ("unsafe\\nS10,S1"), slower for the first input."""
    async def handle(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        text = body["messages"][-1]["content"]
        if delay and text == "first":
            await asyncio.sleep(delay)
        verdict = "unsafe\nS10,S1" if "hate" in text else "safe"
        return httpx.Response(200, json=envelope({"response": verdict,
                                                  "usage": {"prompt_tokens": 100, "completion_tokens": 3}}))
    return handle


async def test_text_shaped_verdicts_in_order_and_usage(settings: Settings, api_key: str, fake: FakeWorkers) -> None:
    fake.models[GUARD] = guard_text(delay=0.05)
    app = create_app(settings, transport=fake.transport())
    async with app.router.lifespan_context(app), sdk_httpx.AsyncClient(
            transport=sdk_httpx.ASGITransport(app=app), base_url="http://proxy.test/v1") as http:
        client = openai.AsyncOpenAI(api_key=api_key, base_url="http://proxy.test/v1", http_client=http,
                                    max_retries=0, _strict_response_validation=True)
        answer = await client.moderations.create(input=["first", "hateful threat", "   "])
    assert [r.flagged for r in answer.results] == [False, True, False]
    threat = answer.results[1]
    assert threat.categories.hate_threatening and threat.categories.harassment_threatening
    assert threat.model_extra == {"cfai_guard_categories": ["S10", "S1"]}
    # One guard call per non-blank input, each a user turn in JSON mode at temperature 0.
    sent = [body for model, body in fake.calls if model == GUARD]
    assert sorted(b["messages"][0]["content"] for b in sent) == ["first", "hateful threat"]
    assert all(b["response_format"] == {"type": "json_object"} and b["temperature"] == 0 for b in sent)


async def test_usage_is_logged_with_the_guard_tokens(settings: Settings, api_key: str, fake: FakeWorkers) -> None:
    fake.models[GUARD] = guard_text()
    app = create_app(settings, transport=fake.transport())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test",
            headers={"Authorization": f"Bearer {api_key}"}) as client:
        response = await client.post("/v1/moderations", json={"input": ["a", "b"]})
    assert response.status_code == 200, response.text
    rows = UsageLog(settings.database).rows(since=0)
    assert [(r.model, r.upstream_model, r.status) for r in rows] == [("omni-moderation-latest", GUARD, 200)]
    assert (rows[0].prompt_tokens, rows[0].completion_tokens) == (200, 6)  # two calls' usage, summed


async def test_inputs_run_concurrently_within_the_request_bound(settings: Settings, api_key: str,
                                                                fake: FakeWorkers) -> None:
    running, peak = 0, 0

    async def handle(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1
        return httpx.Response(200, json=envelope({"response": {"safe": True, "categories": []}}))

    fake.models[GUARD] = handle
    app = create_app(settings, transport=fake.transport())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test",
            headers={"Authorization": f"Bearer {api_key}"}) as client:
        response = await client.post("/v1/moderations", json={"input": [f"text {i}" for i in range(20)]})
    assert response.status_code == 200 and len(response.json()["results"]) == 20
    assert 1 < peak <= 8
