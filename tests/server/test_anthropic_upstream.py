"""An Anthropic upstream (and a Gemini preset) behind the proxy, driven by the real `openai` SDK: a route from
Workers AI to Claude fails over when Workers AI fails, answers whole and streamed with tool calls, names what
served, records usage; Anthropic's 529 fails over and rests its target; /health shows the type.

The upstreams are faked behind one transport (tests/fake_upstreams.py); fixtures come from test_routing, with
this module's own config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from cfai_cli.settings import Settings
from cfai_cli.store.usage import UsageLog
from tests import anthropic_upstream as rec
from tests.fake_upstreams import FakeUpstreams, openai_completion
from tests.openai_schema import validate, validate_sse_chat_stream
from tests.server.test_routing import (  # noqa: F401  (anyio_backend, clock, proxy, up: fixtures)
    FAILURES,
    MAIN,
    MODEL,
    Clock,
    anyio_backend,
    clock,
    proxy,
    settings_with,
    up,
)

pytestmark = pytest.mark.anyio

CLAUDE = "claude-sonnet-4-5"
ANTHROPIC_KEY = "sk-ant-api03-proxy-test-key-0123"
CONFIG = f"""
[upstreams.anthropic]
type = "anthropic"
base_url = "https://anthropic.test"
api_key_env = "ANTHROPIC_KEY"

[upstreams.gemini]
type = "gemini"

[routes]
smart = ["{MODEL}", "anthropic:{CLAUDE}"]
claude-first = ["anthropic:{CLAUDE}", "{MODEL}"]
gem = ["gemini:gemini-2.5-flash"]
"""
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"location": {"type": "string"}}}}}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_with(tmp_path, CONFIG, {"ANTHROPIC_KEY": ANTHROPIC_KEY, "GEMINI_API_KEY": "gemini-key-0123456789"},
                         max_retries=0)


def fake_claude(fakes: FakeUpstreams, *, status: int = 200) -> list[tuple[httpx.Request, dict[str, Any]]]:
    """Anthropic at anthropic.test: a tool call when tools are offered, else text; `status` != 200 fails."""
    seen: list[tuple[httpx.Request, dict[str, Any]]] = []

    def handle(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        seen.append((request, body))
        assert request.url.path == "/v1/messages"
        if status != 200:
            return httpx.Response(status, json=rec.error_body("overloaded_error", "Overloaded"))
        model = body["model"]
        if body.get("stream"):
            events = rec.TOOL_EVENTS if body.get("tools") else rec.text_events("Hej", " från Claude", model=model)
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=rec.sse(*events))
        return httpx.Response(200, json={**(rec.TOOL if body.get("tools") else rec.TEXT), "model": model})

    fakes.providers["anthropic.test"] = handle
    return seen


def sdk(client: httpx.AsyncClient) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=client.headers["authorization"][7:], base_url="http://proxy.test/v1",
                              http_client=client)


@pytest.mark.parametrize("failure", ["capacity", "server"])
async def test_workers_ai_failing_fails_over_to_claude(proxy, up: FakeUpstreams, settings: Settings,  # noqa: F811
                                                       failure: str) -> None:
    seen = fake_claude(up)
    up.account(MAIN).models[MODEL] = FAILURES[failure]
    async with proxy() as client:
        raw = await sdk(client).chat.completions.with_raw_response.create(
            model="smart", messages=[{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hi"}],
            max_tokens=64, temperature=0.5)
        done = raw.parse()
        await client.app.state.recorder.flush()
    assert done.choices[0].message.content == "Hello! How can I help?"
    assert (raw.headers["x-cfai-upstream"], raw.headers["x-cfai-model"]) == ("anthropic", CLAUDE)
    validate(json.loads(raw.http_response.content), "CreateChatCompletionResponse")
    request, body = seen[0]
    assert request.headers["x-api-key"] == ANTHROPIC_KEY and request.headers["anthropic-version"] == "2023-06-01"
    assert body == {"model": CLAUDE, "system": "Be kind.", "max_tokens": 64, "temperature": 0.5,
                    "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    assert [who.split("/")[0] for who in up.who()] == [MAIN, "anthropic.test"]
    row = UsageLog(settings.database).rows(since=0)[0]
    assert (row.upstream, row.upstream_model, row.prompt_tokens, row.completion_tokens) == ("anthropic", CLAUDE, 12, 6)


async def test_tool_calls_whole_and_streamed_through_the_sdk(proxy, up: FakeUpstreams,  # noqa: F811
                                                             settings: Settings) -> None:
    seen = fake_claude(up)
    up.account(MAIN).models[MODEL] = FAILURES["capacity"]
    messages: Any = [{"role": "user", "content": "Weather in SF?"}]
    async with proxy() as client:
        done = await sdk(client).chat.completions.create(model="smart", messages=messages, tools=[WEATHER],
                                                         tool_choice="required")  # type: ignore[list-item]
        call = done.choices[0].message.tool_calls[0]  # type: ignore[index]
        assert (call.id, call.function.name) == ("toolu_01A09q90qw90lq917835lq9", "get_weather")  # type: ignore[union-attr]
        assert json.loads(call.function.arguments) == {"location": "San Francisco, CA", "unit": "celsius"}  # type: ignore[union-attr]
        assert done.choices[0].finish_reason == "tool_calls"
        stream = await sdk(client).chat.completions.create(model="smart", messages=messages, tools=[WEATHER],
                                                           stream=True)  # type: ignore[list-item]
        calls: dict[int, list[str]] = {}
        finish = None
        async for chunk in stream:
            assert chunk.usage is None  # the client did not ask for usage: cfai asked, for its record only
            for choice in chunk.choices:
                for delta in choice.delta.tool_calls or []:
                    got = calls.setdefault(delta.index, [delta.id or "", "", ""])
                    got[1] += delta.function.name or "" if delta.function else ""
                    got[2] += delta.function.arguments or "" if delta.function else ""
                finish = choice.finish_reason or finish
        await client.app.state.recorder.flush()
    assert calls == {0: ["toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", '{"location": "San Francisco, CA"}'],
                     1: ["toolu_02NoArgs", "get_time", "{}"]}
    assert finish == "tool_calls"
    assert seen[0][1]["tool_choice"] == {"type": "any"} and seen[1][1]["stream"] is True
    rows = UsageLog(settings.database).rows(since=0)
    assert [(r.upstream, r.prompt_tokens, r.completion_tokens) for r in rows] == [
        ("anthropic", 594, 95), ("anthropic", 472, 89)]


async def test_a_streamed_text_answer_is_valid_openai_sse_with_usage_when_asked(proxy, up: FakeUpstreams  # noqa: F811
                                                                                ) -> None:
    fake_claude(up)
    up.account(MAIN).models[MODEL] = FAILURES["server"]
    async with proxy() as client:
        response = await client.post("/v1/chat/completions", json={
            "model": "smart", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200 and response.headers["x-cfai-model"] == CLAUDE
    chunks = validate_sse_chat_stream(response.text)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "Hej från Claude"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 40


async def test_anthropic_overloaded_fails_over_and_rests_the_target(proxy, up: FakeUpstreams,  # noqa: F811
                                                                    clock: Clock) -> None:  # noqa: F811
    fake_claude(up, status=529)
    async with proxy() as client:
        first = await client.post("/v1/chat/completions", json={"model": "claude-first", "messages": [
            {"role": "user", "content": "hi"}]})
        second = await client.post("/v1/chat/completions", json={"model": "claude-first", "messages": [
            {"role": "user", "content": "hi"}]})
        health = (await client.get("/health?detail=1")).json()
    assert first.status_code == second.status_code == 200
    assert first.headers["x-cfai-upstream"] == "cloudflare"
    assert [who.split("/")[0] for who in up.who()] == ["anthropic.test", MAIN, MAIN]  # resting: not asked again
    claude = next(u for u in health["upstreams"] if u["name"] == "anthropic")
    assert claude["type"] == "anthropic" and claude["keys"][0]["last_error"]["kind"] == "capacity"
    assert ANTHROPIC_KEY not in json.dumps(health)


async def test_n_above_one_is_a_clear_400_from_claude(proxy, up: FakeUpstreams) -> None:  # noqa: F811
    fake_claude(up)
    async with proxy() as client:
        with pytest.raises(openai.BadRequestError) as info:
            await sdk(client).chat.completions.create(model="claude-first", n=2,
                                                      messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 400 and info.value.param == "n"  # type: ignore[attr-defined]
    assert "Anthropic" in info.value.message


async def test_the_gemini_preset_is_an_openai_compatible_upstream(proxy, up: FakeUpstreams) -> None:  # noqa: F811
    seen: list[httpx.Request] = []

    def gemini(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=openai_completion("from Gemini", model=body["model"]))

    up.providers["generativelanguage.googleapis.com"] = gemini
    async with proxy() as client:
        done = await sdk(client).chat.completions.create(model="gem", messages=[{"role": "user", "content": "hi"}])
    assert done.choices[0].message.content == "from Gemini"
    assert str(seen[0].url) == "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions"
    assert seen[0].headers["authorization"] == "Bearer gemini-key-0123456789"



async def test_anthropic_messages_to_an_anthropic_upstream_pass_through(up: FakeUpstreams,  # noqa: F811
                                                                        settings: Settings) -> None:
    """A request that arrives as Anthropic Messages and is served by an Anthropic upstream goes as the client
    sent it (cache_control, thinking, top_k and all; only the model renamed), and the upstream's own message
    and events come back untranslated, whole and streamed; its usage is recorded."""
    from cfai_cli.store.keys import KeyPolicy, KeyStore
    from tests.server.anthropic_client import claude_on

    seen = fake_claude(up)
    key, _ = KeyStore(settings.database).create("claude", KeyPolicy(scopes=frozenset({"chat"})))
    system: Any = [{"type": "text", "text": "Be kind.", "cache_control": {"type": "ephemeral"}}]
    ask: dict[str, Any] = {"model": "claude-first", "max_tokens": 2000, "system": system,
                           "thinking": {"type": "enabled", "budget_tokens": 1024},
                           "messages": [{"role": "user", "content": "hi"}]}
    extra = {"top_k": 5}  # SDK 2.x takes sampling settings only as extra_body
    async with claude_on(settings, key, transport=up.transport()) as claude:
        whole = await claude.messages.create(**ask, extra_body=extra)
        async with claude.messages.stream(**ask, extra_body=extra) as events:
            kinds = [event.type async for event in events]
            final = await events.get_final_message()
    assert whole.id == rec.TEXT["id"] and whole.model == CLAUDE  # the upstream's own message
    assert [request.url.path for request, _ in seen] == ["/v1/messages"] * 2
    assert seen[0][1] == {**ask, **extra, "model": CLAUDE}
    assert seen[1][1] == {**ask, **extra, "model": CLAUDE, "stream": True}
    assert "".join(block.text for block in final.content if block.type == "text") == "Hej från Claude"
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    rows = UsageLog(settings.database).rows(since=0)
    assert [(row.upstream, row.upstream_model) for row in rows] == [("anthropic", CLAUDE)] * 2
    assert [(row.prompt_tokens, row.completion_tokens) for row in rows] == [(12, 6), (25, 15)]
