"""The Responses API and legacy completions for every emulated text model (`cfai serve --offline`).

One path serves every model (the Responses request rides on the chat translation), so this sweep is what
proves "Responses for every Workers AI text model, streaming included". Every body is schema-validated.
"""

from __future__ import annotations

import json

import openai
import pytest

from cfai_cli.emulator.catalogue import TEXT_MODELS
from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings
from tests.openai_schema import validate, validate_sse_responses_stream
from tests.sdk import offline_raw, sdk_httpx

pytestmark = pytest.mark.anyio


MODELS = sorted(TEXT_MODELS)
TOOL = {"type": "function", "name": "get_weather", "description": "Weather for a city", "strict": False,
        "parameters": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}}
QUESTION = "What is the weather in Paris?"


@pytest.mark.parametrize("model", MODELS)
async def test_every_model_responses_plain_stream_tools_and_completions(settings: Settings, api_key: str,
                                                                         model: str) -> None:
    async with offline_raw(settings, api_key) as client:
        plain = await client.post("/responses", json={"model": model, "input": QUESTION, "max_output_tokens": 2048,
                                                      "instructions": "Be brief."})
        assert plain.status_code == 200, plain.text
        response = plain.json()
        validate(response, "Response")
        assert response["status"] == "completed" and "offline" in response["output_text"]

        streamed = await client.post("/responses", json={"model": model, "input": QUESTION, "stream": True,
                                                         "max_output_tokens": 2048, "instructions": "Be brief."})
        assert streamed.status_code == 200, streamed.text
        events = validate_sse_responses_stream(streamed.text)
        final = events[-1]["response"]
        assert events[-1]["type"] == "response.completed" and final["output_text"] == response["output_text"]
        assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == final["output_text"]

        tools = await client.post("/responses", json={"model": model, "input": QUESTION, "tools": [TOOL],
                                                      "max_output_tokens": 2048, "stream": True})
        events = validate_sse_responses_stream(tools.text)
        calls = [i for i in events[-1]["response"]["output"] if i["type"] == "function_call"]
        assert calls and json.loads(calls[0]["arguments"])["city"]

        follow = await client.post("/responses", json={
            "model": model, "tools": [TOOL], "max_output_tokens": 2048,
            "previous_response_id": events[-1]["response"]["id"],
            "input": [{"type": "function_call_output", "call_id": calls[0]["call_id"], "output": '{"sky": "clear"}'}]})
        assert follow.status_code == 200, follow.text
        validate(follow.json(), "Response")
        assert "clear" in follow.json()["output_text"]

        legacy = await client.post("/completions", json={"model": model, "prompt": QUESTION, "max_tokens": 2048})
        assert legacy.status_code == 200, legacy.text
        validate(legacy.json(), "CreateCompletionResponse")
        assert "offline" in legacy.json()["choices"][0]["text"]


async def test_sdk_stream_helper_offline_with_reasoning_model(settings: Settings, api_key: str) -> None:
    app = create_app(settings.as_offline())
    async with app.router.lifespan_context(app), sdk_httpx.AsyncClient(
        transport=sdk_httpx.ASGITransport(app=app), base_url="http://proxy.test/v1"
    ) as http:
        client = openai.AsyncOpenAI(api_key=api_key, base_url="http://proxy.test/v1", http_client=http,
                                    max_retries=0, _strict_response_validation=True)
        async with client.responses.stream(model="@cf/openai/gpt-oss-120b", input="hello",
                                           reasoning={"effort": "high"}) as stream:
            final = await stream.get_final_response()
        second = await client.responses.create(model="@cf/openai/gpt-oss-120b", input="and again",
                                               previous_response_id=final.id)
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert "offline" in final.output_text and "and again" in second.output_text


@pytest.mark.parametrize("fault", ["stream-cut", "stream-error", "stream-garbage"])
async def test_broken_offline_streams_end_with_response_failed(settings: Settings, api_key: str, fault: str) -> None:
    async with offline_raw(settings, api_key) as client:
        reply = await client.post("/responses", json={"model": f"@cf/cfai/fault-{fault}", "input": "x",
                                                      "stream": True})
    events = validate_sse_responses_stream(reply.text)
    assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
