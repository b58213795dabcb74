"""The official `anthropic` Python SDK (strict validation) against `cfai serve` in process: POST /v1/messages
plain and streamed, system blocks, multi-turn, stop sequences, a whole tool loop, images, count_tokens, the
stream helper, and /v1/models in Anthropic's shape. Workers AI is the built-in emulator, or the fake where a
test must see what went upstream or choose the words that come back.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import pytest

from cfai_cli.settings import Settings
from cfai_cli.store.usage import UsageLog
from tests.fake_workers import FakeWorkers, native_text
from tests.server.anthropic_client import claude_on, raw_on

pytestmark = pytest.mark.anyio

LLAMA = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
SCOUT = "@cf/meta/llama-4-scout-17b-16e-instruct"  # what claude-sonnet-* runs as (core.catalog)
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER = {"name": "get_weather", "description": "Current weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
ASK_WEATHER = 'Weather in Paris? [emulator:args={"city": "Paris"}]'


def text_of(message: anthropic.types.Message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


async def test_plain_message(settings: Settings, api_key: str) -> None:
    async with claude_on(settings.as_offline(), api_key) as client:
        message = await client.messages.create(model="claude-sonnet-4-5", max_tokens=200,
                                               messages=[{"role": "user", "content": "Hello there"}])
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert message.model == "claude-sonnet-4-5"  # the name asked for is echoed, as Claude Code expects
    assert SCOUT in text_of(message) and "You said: Hello there" in text_of(message)
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


async def test_bearer_and_x_api_key_both_work_and_usage_is_logged(settings: Settings, api_key: str) -> None:
    for bearer in (False, True):
        async with claude_on(settings.as_offline(), api_key, bearer=bearer) as client:
            message = await client.messages.create(model="claude-haiku-4-5", max_tokens=50,
                                                   messages=[{"role": "user", "content": "hi"}])
        assert message.content
    rows = UsageLog(settings.database).rows(since=0)
    assert [(r.route, r.model, r.status) for r in rows] == [("messages", "claude-haiku-4-5", 200)] * 2
    assert all(r.upstream_model and r.completion_tokens > 0 for r in rows)


async def test_system_blocks_with_cache_control_and_multi_turn(settings: Settings, api_key: str,
                                                               fake: FakeWorkers) -> None:
    fake.models[LLAMA] = native_text("Third answer")
    async with claude_on(settings, api_key, transport=fake.transport()) as client:
        message = await client.messages.create(
            model=LLAMA, max_tokens=321, metadata={"user_id": "u-1"}, output_config={"effort": "low"},
            cache_control={"type": "ephemeral"}, extra_body={"temperature": 0.2, "top_k": 5},
            system=[{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}},
                    {"type": "text", "text": "Answer in English."}],
            messages=[{"role": "user", "content": "One?"}, {"role": "assistant", "content": "1"},
                      {"role": "user", "content": [{"type": "text", "text": "Two?",
                                                    "cache_control": {"type": "ephemeral"}}]}])
    assert text_of(message) == "Third answer"
    sent = fake.calls[-1][1]
    assert sent["messages"] == [{"role": "system", "content": "You are terse.\nAnswer in English."},
                                {"role": "user", "content": "One?"}, {"role": "assistant", "content": "1"},
                                {"role": "user", "content": "Two?"}]
    assert sent["max_tokens"] == 321 and sent["temperature"] == 0.2  # never Workers AI's 256 default


@pytest.mark.parametrize("stream", [False, True])
async def test_stop_sequences(settings: Settings, api_key: str, fake: FakeWorkers, stream: bool) -> None:
    fake.models[LLAMA] = native_text("alpha beta STOP gamma delta")
    async with raw_on(settings, api_key, transport=fake.transport()) as raw:
        reply = await raw.post("/v1/messages", json={
            "model": LLAMA, "max_tokens": 50, "stream": stream, "stop_sequences": ["STOP", "zeta"],
            "messages": [{"role": "user", "content": "go"}]})
    assert reply.status_code == 200
    assert "gamma" not in reply.text  # nothing after the stop sequence ever goes out
    async with claude_on(settings, api_key, transport=fake.transport()) as client:
        if stream:
            async with client.messages.stream(model=LLAMA, max_tokens=50, stop_sequences=["STOP"],
                                              messages=[{"role": "user", "content": "go"}]) as events:
                message = await events.get_final_message()
        else:
            message = await client.messages.create(model=LLAMA, max_tokens=50, stop_sequences=["STOP"],
                                                   messages=[{"role": "user", "content": "go"}])
    assert text_of(message) == "alpha beta "
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "STOP"


async def test_max_tokens_cuts_the_answer(settings: Settings, api_key: str) -> None:
    async with claude_on(settings.as_offline(), api_key) as client:
        message = await client.messages.create(model="claude-haiku-4-5", max_tokens=3,
                                               messages=[{"role": "user", "content": "Talk"}])
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens <= 3


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_loop(settings: Settings, api_key: str, stream: bool) -> None:
    """tool_use -> the client runs the tool -> tool_result -> the final answer, as an agent loop does."""
    async with claude_on(settings.as_offline(), api_key) as client:
        turns: list[Any] = [{"role": "user", "content": ASK_WEATHER}]

        async def ask() -> anthropic.types.Message:
            if not stream:
                return await client.messages.create(model="claude-sonnet-4-5", max_tokens=300, tools=[WEATHER],
                                                    messages=turns)
            async with client.messages.stream(model="claude-sonnet-4-5", max_tokens=300, tools=[WEATHER],
                                              messages=turns) as events:
                return await events.get_final_message()

        first = await ask()
        calls = [b for b in first.content if b.type == "tool_use"]
        assert first.stop_reason == "tool_use" and len(calls) == 1
        assert calls[0].id.startswith("toolu_") and calls[0].name == "get_weather"
        assert calls[0].input == {"city": "Paris"}
        turns += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": calls[0].id,
                                                "content": [{"type": "text", "text": "18 C and sunny"}]}]}]
        final = await ask()
    assert final.stop_reason == "end_turn"
    assert "get_weather returned: 18 C and sunny" in text_of(final)


async def test_tool_choice_forces_the_named_tool(settings: Settings, api_key: str) -> None:
    other = {**WEATHER, "name": "get_time", "description": "The time in a city"}
    async with claude_on(settings.as_offline(), api_key) as client:
        message = await client.messages.create(
            model="claude-sonnet-4-5", max_tokens=300, tools=[WEATHER, other],
            tool_choice={"type": "tool", "name": "get_time"}, messages=[{"role": "user", "content": "Paris"}])
    assert [b.name for b in message.content if b.type == "tool_use"] == ["get_time"]


async def test_server_tools_are_dropped_and_said_so(settings: Settings, api_key: str) -> None:
    async with claude_on(settings.as_offline(), api_key) as client:
        reply = await client.messages.with_raw_response.create(
            model="claude-sonnet-4-5", max_tokens=100, messages=[{"role": "user", "content": "hi"}],
            tools=[{"type": "web_search_20250305", "name": "web_search"}])
        message = await reply.parse()
    assert reply.headers["x-cfai-dropped-tools"] == "web_search_20250305"
    assert message.stop_reason == "end_turn"


async def test_base64_image(settings: Settings, api_key: str) -> None:
    async with claude_on(settings.as_offline(), api_key) as client:
        message = await client.messages.create(model="claude-sonnet-4-5", max_tokens=200, messages=[{
            "role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                {"type": "text", "text": "What is this?"}]}])
    assert "You sent an image" in text_of(message)


async def test_stream_events_and_final_message(settings: Settings, api_key: str) -> None:
    async with claude_on(settings.as_offline(), api_key) as client, client.messages.stream(
            model="claude-sonnet-4-5", max_tokens=200, messages=[{"role": "user", "content": "Stream it"}]) as events:
        kinds = [event.type async for event in events]
        message = await events.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert kinds.count("content_block_start") == kinds.count("content_block_stop") >= 1
    assert "text" in kinds  # the helper's own event for each text_delta
    assert "You said: Stream it" in text_of(message) and message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0


async def test_raw_stream_is_anthropics_sse(settings: Settings, api_key: str) -> None:
    async with raw_on(settings.as_offline(), api_key) as raw:
        reply = await raw.post("/v1/messages?beta=true", json={
            "model": "claude-sonnet-4-5", "max_tokens": 100, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
    frames = [f for f in reply.text.split("\n\n") if f.strip()]
    for frame in frames:  # an `event:` line on every event, naming the type its data carries
        event, data = frame.split("\n", 1)
        assert event.startswith("event: ") and data.startswith("data: ")
        assert json.loads(data[6:])["type"] == event[7:]
    assert frames[-1].startswith("event: message_stop") and "[DONE]" not in reply.text


async def test_count_tokens(settings: Settings, api_key: str) -> None:
    short = [{"role": "user", "content": "Hi"}]
    longer = [{"role": "user", "content": "Hi " * 200}]
    async with claude_on(settings.as_offline(), api_key) as client:
        small = await client.messages.count_tokens(model="claude-sonnet-4-5", messages=short)
        big = await client.messages.count_tokens(model="claude-sonnet-4-5", messages=longer)
        with_tools = await client.messages.count_tokens(model="claude-sonnet-4-5", messages=short,
                                                        tools=[WEATHER], system="Be kind.")
    assert 0 < small.input_tokens < big.input_tokens
    assert with_tools.input_tokens > small.input_tokens
    rows = UsageLog(settings.database).rows(since=0)
    assert {r.route for r in rows} == {"messages/count_tokens"} and all(r.upstream_model is None for r in rows)


async def test_models_in_anthropic_shape(settings: Settings, api_key: str) -> None:
    async with claude_on(settings.as_offline(), api_key) as client:
        page = await client.models.list(limit=2)
        ids = [m.id async for m in await client.models.list(limit=2)]  # the SDK follows has_more/last_id
        one = await client.models.retrieve("claude-sonnet-4-5")
    assert page.has_more and len(page.data) == 2 and page.first_id == page.data[0].id
    assert page.data[0].type == "model" and page.data[0].display_name
    assert LLAMA in ids and len(ids) == len(set(ids)) > 2
    assert one.id == "claude-sonnet-4-5" and one.type == "model" and one.max_input_tokens
    async with raw_on(settings.as_offline(), api_key) as raw:
        del raw.headers["anthropic-version"]  # an OpenAI client: OpenAI's shape, unchanged
        openai_shape = (await raw.get("/v1/models")).json()
    assert openai_shape["object"] == "list" and openai_shape["data"][0]["object"] == "model"


async def test_model_pages_follow_anthropics_cursors(settings: Settings, api_key: str) -> None:
    async with raw_on(settings.as_offline(), api_key) as raw:
        every = [m["id"] for m in (await raw.get("/v1/models", params={"limit": 1000})).json()["data"]]
        first = (await raw.get("/v1/models", params={"limit": 3})).json()
        second = (await raw.get("/v1/models", params={"limit": 3, "after_id": first["last_id"]})).json()
        back = (await raw.get("/v1/models", params={"limit": 3, "before_id": second["first_id"]})).json()
        bad = await raw.get("/v1/models", params={"after_id": "nope"})
    assert [m["id"] for m in first["data"] + second["data"]] == every[:6]
    assert back["data"] == first["data"] and first["has_more"] and not back["has_more"]  # nothing before it
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


async def test_max_tokens_is_fitted_into_the_context_window(settings: Settings, api_key: str,
                                                            fake: FakeWorkers) -> None:
    """Claude Code asks for 128,000 output tokens; a model with a 24,000-token context (the fake catalogue's
    Llama 3.3) would refuse prompt + max_tokens over it, so cfai asks for what fits. Small values go as asked."""
    fake.models[LLAMA] = native_text("Fine")
    prompt = "word " * 4000  # about 4,000 tokens by the estimate
    async with claude_on(settings, api_key, transport=fake.transport()) as client:
        for asked in (128_000, 300):
            async with client.messages.stream(model=LLAMA, max_tokens=asked,
                                              messages=[{"role": "user", "content": prompt}]) as events:
                assert text_of(await events.get_final_message()) == "Fine"
    fitted, small = (body["max_tokens"] for _, body in fake.calls)
    assert 15_000 < fitted < 24_000 - 4_000 and small == 300


async def test_without_a_catalogue_max_tokens_goes_as_asked(settings: Settings, api_key: str,
                                                            fake: FakeWorkers) -> None:
    """The catalogue unreachable: the request still runs, with max_tokens as sent for a model whose window
    cfai does not know, fitted to the known window of one it does (core.catalog.CONTEXT_WINDOWS), and the
    catalogue is not asked again on every request."""
    unknown = "@cf/meta/llama-3.1-8b-instruct-fast"
    fake.models[unknown] = native_text("Fine")
    fake.models[LLAMA] = native_text("Fine")
    searches: list[str] = []

    def workers(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/ai/models/search"):
            searches.append(request.url.path)
            return httpx.Response(500, text="<html>down</html>")
        return fake(request)

    async with claude_on(settings, api_key, transport=httpx.MockTransport(workers)) as client:
        for model in (unknown, unknown, LLAMA):
            async with client.messages.stream(model=model, max_tokens=128_000,
                                              messages=[{"role": "user", "content": "hi"}]) as events:
                assert text_of(await events.get_final_message()) == "Fine"
        asked = len(searches)
    sent = [body["max_tokens"] for _, body in fake.calls]
    assert sent[:2] == [128_000] * 2 and 20_000 < sent[2] < 24_000  # LLAMA: 24,000 tokens of context
    assert 1 <= asked <= 3  # the first request's tries only (the client retries a 500)
