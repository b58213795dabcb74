"""Every emulated text model through the whole proxy and the real openai SDK (`cfai serve --offline`).

This is the conformance sweep users rely on when they test their apps offline: plain, streamed,
tool-calling and stop-sequence requests, each raw body validated against the OpenAI schemas.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
import pytest

from cfai_cli.emulator.catalogue import TEXT_MODELS
from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings
from tests.openai_schema import validate, validate_sse_chat_stream
from tests.sdk import sdk_httpx

pytestmark = pytest.mark.anyio


MODELS = sorted(TEXT_MODELS)
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                         "parameters": {"type": "object", "required": ["city"],
                                                        "properties": {"city": {"type": "string"}}}}}


@pytest.fixture
def offline(settings: Settings) -> Settings:
    return settings.as_offline()


@asynccontextmanager
async def raw_client(settings: Settings, key: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://proxy.test/v1",
        headers={"Authorization": f"Bearer {key}"},
    ) as client:
        yield client


def body(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": "What is the weather in Paris?"}], **extra}


@pytest.mark.parametrize("model", MODELS)
async def test_every_model_plain_stream_tools_and_stop(offline: Settings, api_key: str, model: str) -> None:
    async with raw_client(offline, api_key) as client:
        plain = await client.post("/chat/completions", json=body(model, max_tokens=2048))
        assert plain.status_code == 200, plain.text
        validate(plain.json(), "CreateChatCompletionResponse")
        answer = plain.json()["choices"][0]["message"]["content"]
        assert "offline" in answer

        streamed = await client.post("/chat/completions", json=body(
            model, max_tokens=2048, stream=True, stream_options={"include_usage": True}))
        assert streamed.status_code == 200, streamed.text
        chunks = validate_sse_chat_stream(streamed.text)
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == answer
        assert chunks[-1]["usage"]["completion_tokens"] > 0

        tools = await client.post("/chat/completions", json=body(model, tools=[TOOL], max_tokens=2048))
        assert tools.status_code == 200, tools.text
        validate(tools.json(), "CreateChatCompletionResponse")
        choice = tools.json()["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        assert json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"])["city"]

        cut = await client.post("/chat/completions", json=body(model, stop=["canned"], max_tokens=2048))
        content = cut.json()["choices"][0]["message"]["content"]
        assert "canned" not in content and answer.startswith(content)


@pytest.mark.parametrize("model", ["@cf/meta/llama-3.3-70b-instruct-fp8-fast", "@cf/zai-org/glm-4.7-flash",
                                   "@cf/openai/gpt-oss-120b", "@cf/meta/llama-4-scout-17b-16e-instruct"])
async def test_sdk_streamed_tool_round_trip_offline(offline: Settings, api_key: str, model: str) -> None:
    app = create_app(offline)
    async with app.router.lifespan_context(app), sdk_httpx.AsyncClient(
        transport=sdk_httpx.ASGITransport(app=app), base_url="http://proxy.test/v1"
    ) as http:
        client = openai.AsyncOpenAI(api_key=api_key, base_url="http://proxy.test/v1", http_client=http,
                                    max_retries=0, _strict_response_validation=True)
        messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
        async with client.chat.completions.stream(model=model, messages=messages, tools=[TOOL],
                                                  max_tokens=2048) as stream:
            first = await stream.get_final_completion()
        call = first.choices[0].message.tool_calls[0]
        messages += [first.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "clear"}'}]
        second = await client.chat.completions.create(model=model, messages=messages, tools=[TOOL],
                                                      max_tokens=2048)
    assert first.choices[0].finish_reason == "tool_calls"
    assert "clear" in (second.choices[0].message.content or "")


async def test_json_mode_offline(offline: Settings, api_key: str) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "temp": {"type": "number"}},
              "required": ["city", "temp"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "weather", "schema": schema}}
    async with raw_client(offline, api_key) as client:
        for model in ("@cf/meta/llama-3.3-70b-instruct-fp8-fast", "@cf/zai-org/glm-4.7-flash"):
            reply = await client.post("/chat/completions", json=body(model, response_format=fmt, max_tokens=2048))
            parsed = json.loads(reply.json()["choices"][0]["message"]["content"])
            assert set(parsed) >= {"city", "temp"}
            streamed = await client.post("/chat/completions", json=body(
                model, response_format=fmt, stream=True, max_tokens=2048))
            chunks = validate_sse_chat_stream(streamed.text)
            text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
            assert json.loads(text) == parsed


async def test_max_tokens_gives_length(offline: Settings, api_key: str) -> None:
    async with raw_client(offline, api_key) as client:
        reply = await client.post("/chat/completions",
                                  json=body("@cf/meta/llama-3.3-70b-instruct-fp8-fast", max_tokens=3))
        streamed = await client.post("/chat/completions", json=body(
            "@cf/meta/llama-3.3-70b-instruct-fp8-fast", max_tokens=3, stream=True))
    assert reply.json()["choices"][0]["finish_reason"] == "length"
    assert validate_sse_chat_stream(streamed.text)[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(("fault", "status"), [("429", 429), ("4006", 429), ("3046", 504), ("500", 502),
                                                ("5xx-html", 502), ("5035", 403), ("stream-cut", 502)])
async def test_fault_models_map_to_openai_errors(offline: Settings, api_key: str, fault: str, status: int) -> None:
    async with raw_client(offline, api_key) as client:
        reply = await client.post("/chat/completions", json=body(f"@cf/cfai/fault-{fault}"))
    assert reply.status_code == status, reply.text
    validate(reply.json(), "ErrorResponse")


@pytest.mark.parametrize("fault", ["stream-cut", "stream-error", "stream-garbage"])
async def test_broken_offline_streams_end_in_band(offline: Settings, api_key: str, fault: str) -> None:
    async with raw_client(offline, api_key) as client:
        reply = await client.post("/chat/completions", json=body(f"@cf/cfai/fault-{fault}", stream=True))
    events = [line[6:] for line in reply.text.split("\n") if line.startswith("data: ")]
    assert "[DONE]" not in events
    validate(json.loads(events[-1]), "ErrorResponse")
