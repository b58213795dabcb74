"""The real `openai` Python SDK, with strict response validation, against the proxy in process.

This is what users run: if the SDK accepts these answers, so will their code.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import openai
import pytest
from pydantic import BaseModel

from cfai_cli.server.app import create_app
from tests.fake_workers import FakeWorkers, chat_dialect_tool_call, native_text, native_tool_call
from tests.sdk import sdk_httpx

pytestmark = pytest.mark.anyio


LLAMA = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
GLM = "@cf/zai-org/glm-4.7-flash"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
def sdk(settings, api_key: str, fake: FakeWorkers):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def open_sdk() -> AsyncIterator[openai.AsyncOpenAI]:
        app = create_app(settings, transport=fake.transport())
        async with app.router.lifespan_context(app), sdk_httpx.AsyncClient(
            transport=sdk_httpx.ASGITransport(app=app), base_url="http://proxy.test/v1"
        ) as http:
            yield openai.AsyncOpenAI(api_key=api_key, base_url="http://proxy.test/v1", http_client=http,
                                     max_retries=0, _strict_response_validation=True)

    return open_sdk


async def test_sdk_chat_completion(sdk, fake: FakeWorkers) -> None:
    fake.models["@cf/meta/llama-3.1-8b-instruct-fast"] = native_text("Hello from the proxy")
    async with sdk() as client:
        completion = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=20)
    assert completion.choices[0].message.content == "Hello from the proxy"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens > 0


async def test_sdk_stream_with_usage(sdk, fake: FakeWorkers) -> None:
    fake.models[LLAMA] = native_text("streamed words arrive in order")
    async with sdk() as client:
        stream = await client.chat.completions.create(
            model=LLAMA, messages=[{"role": "user", "content": "go"}], stream=True,
            stream_options={"include_usage": True})
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "streamed words arrive in order"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


async def test_sdk_tool_call_round_trip(sdk, fake: FakeWorkers) -> None:
    fake.models[LLAMA] = native_tool_call("get_weather", {"city": "Paris"})
    async with sdk() as client:
        first = await client.chat.completions.create(
            model=LLAMA, messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER_TOOL])
        call = first.choices[0].message.tool_calls[0]
        assert first.choices[0].finish_reason == "tool_calls"
        assert call.id.startswith("call_") and call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"city": "Paris"}

        fake.models[LLAMA] = native_text("It is sunny in Paris.")
        second = await client.chat.completions.create(model=LLAMA, tools=[WEATHER_TOOL], messages=[
            {"role": "user", "content": "Weather in Paris?"},
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "clear"}'},
        ])
    assert second.choices[0].message.content == "It is sunny in Paris."
    _, sent = fake.calls[-1]
    assert sent["messages"][1]["tool_calls"][0]["id"] == call.id
    assert sent["messages"][2] == {"role": "tool", "content": '{"sky": "clear"}', "tool_call_id": call.id,
                                   "name": "get_weather"}


async def test_sdk_stream_helper_with_streamed_tools(sdk, fake: FakeWorkers) -> None:
    fake.models[GLM] = chat_dialect_tool_call("get_weather", '{"city": "Oslo"}')
    async with sdk() as client, client.chat.completions.stream(
        model=GLM, messages=[{"role": "user", "content": "Weather in Oslo?"}], tools=[WEATHER_TOOL]
    ) as stream:
        async for _event in stream:
            pass
        final = await stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Oslo"}
    assert final.choices[0].finish_reason == "tool_calls"


async def test_sdk_stream_helper_with_streamed_native_tools(sdk, fake: FakeWorkers) -> None:
    fake.models[LLAMA] = native_tool_call("get_weather", {"city": "Rome"})
    async with sdk() as client, client.chat.completions.stream(
        model=LLAMA, messages=[{"role": "user", "content": "Weather in Rome?"}], tools=[WEATHER_TOOL]
    ) as stream:
        final = await stream.get_final_completion()
    assert json.loads(final.choices[0].message.tool_calls[0].function.arguments) == {"city": "Rome"}


async def test_sdk_parse_structured_output(sdk, fake: FakeWorkers) -> None:
    class City(BaseModel):
        name: str
        population: int

    def json_mode(request, body):  # type: ignore[no-untyped-def]
        assert body["response_format"]["type"] == "json_schema"
        assert body["response_format"]["json_schema"]["title"] == "City"
        return httpx.Response(200, json={"result": {"response": {"name": "Oslo", "population": 700000}},
                                         "success": True, "errors": [], "messages": []})

    fake.models[LLAMA] = json_mode
    async with sdk() as client:
        parsed = await client.chat.completions.parse(
            model=LLAMA, messages=[{"role": "user", "content": "A city"}], response_format=City)
    assert parsed.choices[0].message.parsed == City(name="Oslo", population=700000)


async def test_sdk_sees_openai_errors(sdk, fake: FakeWorkers) -> None:
    async with sdk() as client:
        with pytest.raises(openai.NotFoundError) as missing:
            await client.chat.completions.create(model="@cf/meta/none", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(model=LLAMA, messages=[{"role": "robot", "content": "x"}])
        models = await client.models.list()
    assert missing.value.code == "model_not_found"
    assert bad.value.param == "messages[0].role"
    assert any(m.id == "gpt-4" for m in models.data)
