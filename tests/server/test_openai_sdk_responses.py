"""The real `openai` SDK, strict response validation on, against the proxy's Responses and completions routes.

`responses.create`, the `responses.stream()` helper (which rebuilds the response from the events and
insists on their order), a tool round trip through `previous_response_id`, and legacy `completions.create`.
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
from tests.fake_workers import FakeWorkers, chat_dialect_tool_call, native_text, native_tool_call, sse, sse_response
from tests.sdk import sdk_httpx

pytestmark = pytest.mark.anyio


LLAMA = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
GLM = "@cf/zai-org/glm-4.7-flash"
TOOL = {"type": "function", "name": "get_weather", "description": "Weather for a city", "strict": False,
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture
def sdk(settings, api_key: str, fake: FakeWorkers):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def open_sdk(*, strict: bool = True) -> AsyncIterator[openai.AsyncOpenAI]:
        app = create_app(settings, transport=fake.transport())
        async with app.router.lifespan_context(app), sdk_httpx.AsyncClient(
            transport=sdk_httpx.ASGITransport(app=app), base_url="http://proxy.test/v1"
        ) as http:
            yield openai.AsyncOpenAI(api_key=api_key, base_url="http://proxy.test/v1", http_client=http,
                                     max_retries=0, _strict_response_validation=strict)

    return open_sdk


async def test_responses_create(sdk, fake: FakeWorkers) -> None:
    fake.models["@cf/meta/llama-3.1-8b-instruct-fast"] = native_text("Hello from Workers AI")
    async with sdk() as client:
        response = await client.responses.create(model="gpt-4o-mini", input="hi", instructions="Be brief.")
        again = await client.responses.retrieve(response.id)
        items = await client.responses.input_items.list(response.id)
        await client.responses.delete(response.id)
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(response.id)
    assert response.output_text == "Hello from Workers AI" and response.status == "completed"
    assert response.usage is not None and response.usage.total_tokens == 11
    assert again.id == response.id and again.output_text == response.output_text
    assert [item.type for item in items.data] == ["message"]


async def test_responses_stream_helper(sdk, fake: FakeWorkers) -> None:
    fake.models[LLAMA] = native_text("one two three")
    async with sdk() as client, client.responses.stream(model=LLAMA, input="count") as stream:
        deltas = [event.delta async for event in stream if event.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert deltas == ["one", " two", " three"]
    assert final.output_text == "one two three" and final.status == "completed"


async def test_responses_stream_helper_with_reasoning_and_tools(sdk, fake: FakeWorkers) -> None:
    fake.models[GLM] = chat_dialect_tool_call("get_weather", '{"city": "Oslo"}')
    async with sdk() as client, client.responses.stream(
        model=GLM, input="Weather in Oslo?", tools=[TOOL], reasoning={"effort": "low", "summary": "auto"}
    ) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert "response.reasoning_summary_text.delta" in kinds and "response.function_call_arguments.delta" in kinds
    reasoning, call = final.output
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == "Need the tool."
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Oslo"}


async def test_tool_round_trip_with_previous_response_id(sdk, fake: FakeWorkers) -> None:
    fake.models[LLAMA] = native_tool_call("get_weather", {"city": "Rome"})
    async with sdk() as client:
        first = await client.responses.create(model=LLAMA, input="Weather in Rome?", tools=[TOOL])
        call = first.output[0]
        assert call.type == "function_call"
        fake.models[LLAMA] = native_text("Warm in Rome.")
        second = await client.responses.create(
            model=LLAMA, tools=[TOOL], previous_response_id=first.id,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": '{"temp": 25}'}])
    assert second.output_text == "Warm in Rome."
    _, sent = fake.calls[-1]
    assert sent["messages"][-1] == {"role": "tool", "content": '{"temp": 25}', "tool_call_id": call.call_id,
                                    "name": "get_weather"}


async def test_responses_parse_structured_output(sdk, fake: FakeWorkers) -> None:
    class City(BaseModel):
        name: str
        population: int

    def json_mode(request, body):  # type: ignore[no-untyped-def]
        assert body["response_format"]["type"] == "json_schema"
        return httpx.Response(200, json={"result": {"response": {"name": "Oslo", "population": 700000}},
                                         "success": True, "errors": [], "messages": []})

    fake.models[LLAMA] = json_mode
    async with sdk() as client:
        parsed = await client.responses.parse(model=LLAMA, input="A city", text_format=City)
    assert parsed.output_parsed == City(name="Oslo", population=700000)


async def test_completions_create(sdk, fake: FakeWorkers) -> None:
    fake.models[LLAMA] = native_text("a time")
    async with sdk() as client:
        completion = await client.completions.create(model=LLAMA, prompt="Once upon", max_tokens=8)
    assert completion.choices[0].text == "a time" and completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 2


async def test_completions_stream(sdk, fake: FakeWorkers) -> None:
    fake.models[LLAMA] = native_text("there was a king")
    # Not strict: the SDK types `finish_reason` as never null, yet OpenAI's own streams send null until the
    # last chunk, as this proxy does; strict validation would reject OpenAI's streams just the same.
    async with sdk(strict=False) as client:
        stream = await client.completions.create(model=LLAMA, prompt="Once", stream=True, echo=True,
                                                 stream_options={"include_usage": True})
        chunks = [chunk async for chunk in stream]
    assert "".join(c.text for chunk in chunks for c in chunk.choices) == "Oncethere was a king"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


async def test_stream_helper_sees_a_mid_stream_failure(sdk, fake: FakeWorkers) -> None:
    def broken(request, body):  # type: ignore[no-untyped-def]
        return sse_response(sse({"response": "Half"}, {"errors": [{"code": 3043, "message": "Internal error"}]},
                                done=False))

    fake.models[LLAMA] = broken
    async with sdk() as client, client.responses.stream(model=LLAMA, input="x") as stream:
        events = [event async for event in stream]
        with pytest.raises(RuntimeError):
            await stream.get_final_response()
    error, failed = events[-2:]
    assert error.type == "error" and "3043" in error.message
    assert failed.type == "response.failed" and failed.response.status == "failed"
    assert failed.response.error is not None and failed.response.error.code == "server_error"
