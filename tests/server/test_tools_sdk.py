"""Agent-grade tools through the whole proxy and the real openai SDK, against the offline emulator.

Forced tool calls on native models that answer in text (recovered, or a clear 502), parallel_tool_calls false,
custom tools on chat, and the `x-cfai-dropped-tools` header; every raw body checked against the OpenAI schemas.
The emulator's triggers (upstream.emulator.content) make the native model misbehave on purpose.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from cfai_cli.emulator.content import CALL_AS_TEXT, NO_JSON, PARALLEL, TEXT_INSTEAD
from cfai_cli.settings import Settings
from cfai_cli.store.keys import KeyStore
from tests.openai_schema import validate, validate_sse_chat_stream, validate_sse_responses_stream
from tests.sdk import offline_raw, offline_sdk

pytestmark = pytest.mark.anyio


LLAMA = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
SCOUT = "@cf/meta/llama-4-scout-17b-16e-instruct"
GLM = "@cf/zai-org/glm-4.7-flash"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
NAMED = {"type": "function", "function": {"name": "get_weather"}}


def ask(text: str) -> list[Any]:
    return [{"role": "system", "content": "Use the tools."}, {"role": "user", "content": text}]


# ---- forced tool calls on a native model that answers in text ------------------------------------

@pytest.mark.parametrize("model", [LLAMA, SCOUT])
@pytest.mark.parametrize("choice", ["required", NAMED])
async def test_forced_call_answered_in_text_is_recovered(settings: Settings, api_key: str, model: str,
                                                          choice: Any) -> None:
    async with offline_sdk(settings, api_key) as client:
        plain = await client.chat.completions.create(model=model, messages=ask("Weather in Paris?"),
                                                     tools=[WEATHER, TIME], tool_choice="auto")
        forced = await client.chat.completions.create(
            model=model, messages=ask(f"Weather in Paris? {TEXT_INSTEAD}"), tools=[WEATHER, TIME],
            tool_choice=choice)
    message = forced.choices[0].message
    assert forced.choices[0].finish_reason == "tool_calls" and message.content is None
    (call,) = message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "London"}
    # The retry's tokens count: two prompts (the second a little longer) and two answers.
    assert plain.usage and forced.usage
    assert forced.usage.prompt_tokens >= 2 * plain.usage.prompt_tokens + 4


async def test_forced_call_recovered_in_a_stream(settings: Settings, api_key: str) -> None:
    body = {"model": LLAMA, "messages": ask(f"Weather? {TEXT_INSTEAD}"), "tools": [WEATHER, TIME],
            "tool_choice": NAMED, "stream": True, "stream_options": {"include_usage": True}}
    async with offline_raw(settings, api_key) as client:
        reply = await client.post("/chat/completions", json=body)
    chunks = validate_sse_chat_stream(reply.text)
    calls = [t for c in chunks for ch in c["choices"] for t in ch["delta"].get("tool_calls", [])]
    assert [t["function"]["name"] for t in calls] == ["get_weather"]
    assert [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch["finish_reason"]] == ["tool_calls"]
    async with offline_sdk(settings, api_key) as client, client.chat.completions.stream(
            model=LLAMA, messages=ask(f"Weather? {TEXT_INSTEAD}"), tools=[WEATHER], tool_choice="required") as stream:
        final = await stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather"]


async def test_a_call_written_as_text_is_salvaged_without_a_retry(settings: Settings, api_key: str) -> None:
    async with offline_sdk(settings, api_key) as client:
        plain = await client.chat.completions.create(model=LLAMA, messages=ask("Weather?"), tools=[WEATHER])
        forced = await client.chat.completions.create(model=LLAMA, messages=ask(f"Weather? {CALL_AS_TEXT}"),
                                                      tools=[WEATHER], tool_choice="required")
    assert forced.choices[0].message.tool_calls and forced.choices[0].finish_reason == "tool_calls"
    assert plain.usage and forced.usage and forced.usage.prompt_tokens < 2 * plain.usage.prompt_tokens


async def test_a_forced_call_that_never_comes_is_a_clear_error(settings: Settings, api_key: str) -> None:
    async with offline_raw(settings, api_key) as client:
        reply = await client.post("/chat/completions", json={
            "model": LLAMA, "messages": ask(f"Weather? {TEXT_INSTEAD} {NO_JSON}"), "tools": [WEATHER],
            "tool_choice": NAMED})
        streamed = await client.post("/chat/completions", json={
            "model": LLAMA, "messages": ask(f"Weather? {TEXT_INSTEAD} {NO_JSON}"), "tools": [WEATHER],
            "tool_choice": "required", "stream": True})
        after = await client.post("/chat/completions", json={"model": LLAMA, "messages": ask("hi")})
    for answer in (reply, streamed):
        assert answer.status_code == 502
        validate(answer.json(), "ErrorResponse")
        error = answer.json()["error"]
        assert error["code"] == "tool_call_failed" and error["param"] == "tool_choice"
        assert "did not produce the required tool call" in error["message"] and "'get_weather'" in error["message"]
    assert after.status_code == 200  # the model is not put to rest for it


async def test_a_forced_call_failure_through_the_sdk(settings: Settings, api_key: str) -> None:
    async with offline_sdk(settings, api_key) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model=LLAMA, messages=ask(f"x {TEXT_INSTEAD} {NO_JSON}"),
                                                 tools=[WEATHER], tool_choice="required")
    assert caught.value.status_code == 502 and caught.value.code == "tool_call_failed"


async def test_auto_text_answers_stay_text(settings: Settings, api_key: str) -> None:
    async with offline_sdk(settings, api_key) as client:
        reply = await client.chat.completions.create(model=LLAMA, messages=ask(f"Hello {TEXT_INSTEAD}"),
                                                     tools=[WEATHER], tool_choice="auto")
    assert reply.choices[0].finish_reason == "stop" and "offline" in (reply.choices[0].message.content or "")


# ---- parallel_tool_calls -------------------------------------------------------------------------

@pytest.mark.parametrize("model", [LLAMA, GLM])
async def test_parallel_tool_calls_false_gives_one_call(settings: Settings, api_key: str, model: str) -> None:
    async with offline_sdk(settings, api_key) as client:
        both = await client.chat.completions.create(model=model, messages=ask(f"Both? {PARALLEL}"),
                                                    tools=[WEATHER, TIME])
        one = await client.chat.completions.create(model=model, messages=ask(f"Both? {PARALLEL}"),
                                                   tools=[WEATHER, TIME], parallel_tool_calls=False)
        async with client.chat.completions.stream(model=model, messages=ask(f"Both? {PARALLEL}"),
                                                  tools=[WEATHER, TIME], parallel_tool_calls=False) as stream:
            streamed = await stream.get_final_completion()
    assert len(both.choices[0].message.tool_calls or []) == 2
    assert [c.function.name for c in one.choices[0].message.tool_calls or []] == ["get_weather"]
    assert [c.function.name for c in streamed.choices[0].message.tool_calls or []] == ["get_weather"]


# ---- custom tools on chat, and dropped hosted tools ----------------------------------------------

CUSTOM = {"type": "custom", "custom": {"name": "run_sql", "description": "Run one SQL query.",
                                       "format": {"type": "text"}}}


async def test_custom_tools_on_chat_whole_and_streamed(settings: Settings, api_key: str) -> None:
    body = {"model": SCOUT, "messages": ask("Count the users."), "tools": [CUSTOM, {"type": "web_search"}],
            "tool_choice": {"type": "custom", "custom": {"name": "run_sql"}}}
    async with offline_raw(settings, api_key) as client:
        whole = await client.post("/chat/completions", json=body)
        streamed = await client.post("/chat/completions", json={**body, "stream": True})
    validate(whole.json(), "CreateChatCompletionResponse")
    (call,) = whole.json()["choices"][0]["message"]["tool_calls"]
    assert call["type"] == "custom" and call["custom"] == {"name": "run_sql", "input": "example"}
    assert whole.headers["x-cfai-dropped-tools"] == "web_search"
    assert streamed.headers["x-cfai-dropped-tools"] == "web_search"
    chunks = [json.loads(line[6:]) for line in streamed.text.splitlines() if line.startswith("data: {")]
    deltas = [t for c in chunks for ch in c["choices"] for t in ch["delta"].get("tool_calls", [])]
    # OpenAI streams custom calls as `type: custom` deltas, which its spec's chunk schema lacks
    # (openai/openai-openapi#576): sent whole, so each is a complete ChatCompletionMessageCustomToolCall.
    assert len(deltas) == 1 and deltas[0]["index"] == 0
    validate({k: v for k, v in deltas[0].items() if k != "index"}, "ChatCompletionMessageCustomToolCall")
    assert deltas[0]["custom"] == call["custom"]
    for c in chunks:
        if not any("tool_calls" in ch["delta"] for ch in c["choices"]):
            validate(c, "CreateChatCompletionStreamResponse")


async def test_custom_tool_history_round_trip(settings: Settings, api_key: str) -> None:
    messages = [*ask("Count the users."),
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "custom", "custom": {"name": "run_sql", "input": "SELECT 1"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "42 users"}]
    async with offline_sdk(settings, api_key) as client:
        reply = await client.chat.completions.create(model=LLAMA, messages=messages, tools=[CUSTOM])  # type: ignore[list-item]
    assert "42 users" in (reply.choices[0].message.content or "")


async def test_no_dropped_tools_header_without_hosted_tools(settings: Settings, api_key: str) -> None:
    async with offline_raw(settings, api_key) as client:
        reply = await client.post("/chat/completions", json={"model": LLAMA, "messages": ask("x"),
                                                              "tools": [WEATHER]})
    assert reply.status_code == 200 and "x-cfai-dropped-tools" not in reply.headers


# ---- the same on /v1/responses -------------------------------------------------------------------

RESPONSE_TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
                  {"type": "custom", "name": "apply_patch", "description": "Edit files."},
                  {"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["vs_1"]}]


@pytest.mark.parametrize("stream", [False, True])
async def test_responses_forced_custom_call_recovered(settings: Settings, api_key: str, stream: bool) -> None:
    body = {"model": LLAMA, "input": f"Fix it {TEXT_INSTEAD}", "tools": RESPONSE_TOOLS,
            "tool_choice": {"type": "custom", "name": "apply_patch"}, "stream": stream}
    async with offline_raw(settings, api_key) as client:
        reply = await client.post("/responses", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-cfai-dropped-tools"] == "web_search,file_search"
    if stream:
        events = validate_sse_responses_stream(reply.text)
        response = events[-1]["response"]
        assert "response.custom_tool_call_input.done" in [e["type"] for e in events]
    else:
        response = reply.json()
        validate(response, "Response")
    (item,) = response["output"]
    assert item["type"] == "custom_tool_call" and item["name"] == "apply_patch" and item["input"] == "example"


async def test_responses_through_the_sdk(settings: Settings, api_key: str) -> None:
    async with offline_sdk(settings, api_key) as client:
        forced = await client.responses.create(model=LLAMA, input=f"Weather? {TEXT_INSTEAD}",
                                               tools=RESPONSE_TOOLS, tool_choice="required")  # type: ignore[arg-type]
        async with client.responses.stream(model=LLAMA, input=f"Weather and patch? {PARALLEL}",
                                           tools=RESPONSE_TOOLS, parallel_tool_calls=False) as stream:  # type: ignore[arg-type]
            single = await stream.get_final_response()
    assert [o.type for o in forced.output] == ["function_call"]
    assert [o.type for o in single.output] == ["function_call"]


async def test_item_references_to_stored_calls_continue_a_tool_loop(settings: Settings, api_key: str) -> None:
    """The Vercel AI SDK's Responses tool loop: earlier output items are sent back as `item_reference`s."""
    async with offline_raw(settings, api_key) as client:
        first = (await client.post("/responses", json={"model": LLAMA, "input": "Weather?",
                                                       "tools": RESPONSE_TOOLS[:1]})).json()
        (call,) = first["output"]
        second = await client.post("/responses", json={"model": LLAMA, "tools": RESPONSE_TOOLS[:1], "input": [
            {"role": "user", "content": "Weather?"}, {"type": "item_reference", "id": call["id"]},
            {"type": "function_call_output", "call_id": call["call_id"], "output": "Sunny, 21 C"}]})
        unknown = await client.post("/responses", json={"model": LLAMA, "input": [
            {"type": "item_reference", "id": "fc_unknown"}]})
        other, _ = KeyStore(settings.as_offline().database).create("someone else")
        other_key = await client.post("/responses", headers={"Authorization": f"Bearer {other}"}, json={
            "model": LLAMA, "input": [{"type": "item_reference", "id": call["id"]}]})
    assert second.status_code == 200, second.text
    assert "Sunny, 21 C" in second.json()["output_text"]
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "input[0].id"
    assert other_key.status_code == 400  # another key's stored items are not visible
