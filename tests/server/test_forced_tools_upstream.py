"""What cfai sends Workers AI for a forced tool call, against a scripted stand-in (tests.fake_workers).

A strict native schema that refuses `tool_choice` gets the body again without it; a model that answers in text
gets the one constrained retry (JSON mode, the function's schema, no tools), whose tokens count in `usage`.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.fake_workers import FakeWorkers, envelope, error_envelope
from tests.openai_schema import validate

pytestmark = pytest.mark.anyio

LLAMA = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}}}


def strict_text_model(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
    """Refuses `tool_choice` like an Ajv schema would, answers in text, and meets JSON mode."""
    if "tool_choice" in body:
        return httpx.Response(400, json=error_envelope(
            5006, "AiError: Bad input: must NOT have additional properties at '/' ('tool_choice') (0c1d)"))
    usage = {"prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35}
    if "response_format" in body:
        return httpx.Response(200, json=envelope({"response": {"city": "Paris"}, "usage": usage}))
    return httpx.Response(200, json=envelope({"response": "I think it is sunny.", "tool_calls": [], "usage": usage}))


async def test_forced_call_through_a_strict_text_answering_model(proxy, fake: FakeWorkers) -> None:
    fake.models[LLAMA] = strict_text_model
    async with proxy() as client:
        reply = await client.post("/v1/chat/completions", json={
            "model": LLAMA, "messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": [WEATHER],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}})
    assert reply.status_code == 200, reply.text
    validate(reply.json(), "CreateChatCompletionResponse")
    choice = reply.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in choice["message"]["tool_calls"]] \
        == [("get_weather", {"city": "Paris"})]
    assert reply.json()["usage"]["prompt_tokens"] == 60 and reply.json()["usage"]["completion_tokens"] == 10
    sent = [body for model, body in fake.calls if model == LLAMA]
    assert [("tool_choice" in b, "tools" in b, "response_format" in b) for b in sent] == [
        (True, True, False),  # as Cloudflare's client sends it
        (False, True, False),  # the schema refused tool_choice: the same body without it
        (False, False, True),  # the model answered in text: one constrained retry
    ]
    assert sent[0]["tool_choice"] == "required" and [t["function"]["name"] for t in sent[0]["tools"]] == ["get_weather"]
    retry = sent[2]
    assert retry["messages"][:-1] == sent[1]["messages"] and retry["messages"][-1]["role"] == "system"
    assert retry["response_format"]["type"] == "json_schema"
    schema = retry["response_format"]["json_schema"]  # bare, as native models take it
    assert schema["required"] == ["city"] and schema["properties"]["city"]["type"] == "string"
