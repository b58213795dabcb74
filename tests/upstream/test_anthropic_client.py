"""The Anthropic upstream client: URL, headers and body; Messages answers and streams as chat; raw pass-through
calls; every error status mapped (529 is capacity) without the key in any message; streams that end early
or carry an error event."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from cfai_cli.core.cooldowns import failure_kind
from cfai_cli.errors import (
    CfaiError,
    InvalidRequest,
    ModelNotFound,
    RateLimited,
    RequestTooLarge,
    UpstreamAuthError,
    UpstreamError,
    UpstreamStreamError,
    UpstreamTimeout,
)
from cfai_cli.upstream.anthropic import AnthropicClient
from tests import anthropic_upstream as rec
from tests.openai_schema import validate
from tests.upstream.test_openai_compat import RecordingStream, hang

pytestmark = pytest.mark.anyio

KEY = "sk-ant-api03-secret-key-0123456789"
SSE = {"content-type": "text/event-stream"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def client(handler: Any, *, timeout: float = 5) -> AnthropicClient:
    return AnthropicClient(name="claude", api_key=KEY, base_url="https://api.anthropic.test/", version="2024-01-01",
                           timeout=timeout, transport=httpx.MockTransport(handler))


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}], **fields}


async def collect(batches: AsyncIterator[list[Any]]) -> list[Any]:
    return [item async for batch in batches for item in batch]


async def test_chat_sends_a_messages_request_and_answers_a_chat_completion() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=rec.TOOL)

    claude = client(handler)
    done = await claude.chat(chat(max_tokens=100, stream_options={"include_usage": True}))
    await claude.aclose()
    request = seen[0]
    assert str(request.url) == "https://api.anthropic.test/v1/messages"
    assert request.headers["x-api-key"] == KEY and request.headers["anthropic-version"] == "2024-01-01"
    assert "authorization" not in request.headers
    assert json.loads(request.content) == {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    validate(done, "CreateChatCompletionResponse")
    assert done["choices"][0]["message"]["tool_calls"][0]["id"] == "toolu_01A09q90qw90lq917835lq9"


async def test_chat_stream_gives_chunks_a_list_per_read_and_closes_the_response() -> None:
    seen: list[dict[str, Any]] = []
    raw = rec.sse(*rec.TOOL_EVENTS)
    body = RecordingStream([raw[:100], raw[100:1500], raw[1500:]])

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        assert request.headers["accept"] == "text/event-stream"
        return httpx.Response(200, headers=SSE, stream=body)

    claude = client(handler)
    batches = [batch async for batch in await claude.chat_stream(chat(stream=True, stream_options={
        "include_usage": True}))]
    await claude.aclose()
    assert seen[0]["stream"] is True and "stream_options" not in seen[0]
    assert len(batches) == 3 and batches[0] == []  # one per read (the first held no whole event); message_stop ends it
    chunks = [chunk for batch in batches for chunk in batch]
    for chunk in chunks:
        validate(chunk, "CreateChatCompletionStreamResponse")
    assert chunks[-1]["usage"]["completion_tokens"] == 89 and chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert body.closed


async def test_a_stream_closed_unread_closes_the_response() -> None:
    body = RecordingStream([rec.sse(*rec.TEXT_EVENTS)])
    claude = client(lambda request: httpx.Response(200, headers=SSE, stream=body))
    stream = await claude.chat_stream(chat(stream=True))
    await stream.aclose()
    await claude.aclose()
    assert body.closed


async def test_a_stream_without_message_stop_ended_early_after_what_came() -> None:
    body = RecordingStream([rec.sse(*rec.TEXT_EVENTS[:-2])])
    claude = client(lambda request: httpx.Response(200, headers=SSE, stream=body))
    got: list[dict[str, Any]] = []
    with pytest.raises(UpstreamStreamError, match="claude ended the stream early"):
        async for batch in await claude.chat_stream(chat(stream=True)):
            got += batch
    await claude.aclose()
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in got) == "Hello! Grüß dich ✓"
    assert body.closed


async def test_an_error_event_mid_stream_is_a_stream_error_with_its_message() -> None:
    raw = rec.sse(*rec.TEXT_EVENTS[:4], rec.OVERLOADED_EVENT)
    claude = client(lambda request: httpx.Response(200, headers=SSE, content=raw))
    got: list[dict[str, Any]] = []
    with pytest.raises(UpstreamStreamError, match="claude stream error: Overloaded") as info:
        async for batch in await claude.chat_stream(chat(stream=True)):
            got += batch
    await claude.aclose()
    assert info.value.upstream_code == "overloaded_error"
    assert got[-1]["choices"][0]["delta"] == {"content": "Hello"}  # what came before the error


async def test_messages_calls_pass_bodies_and_events_through() -> None:
    sent = {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}],
            "top_k": 3, "cache_control": {"type": "ephemeral"}}

    def handler(request: httpx.Request) -> httpx.Response:
        got = json.loads(request.content)
        if got.get("stream"):
            return httpx.Response(200, headers=SSE, content=rec.sse(*rec.TEXT_EVENTS))
        assert got == sent
        return httpx.Response(200, json=rec.TEXT)

    claude = client(handler)
    assert await claude.messages(sent) == rec.TEXT
    events = await collect(await claude.messages_stream({**sent, "stream": True}))
    await claude.aclose()
    assert events == [(e["type"], e) for e in rec.TEXT_EVENTS]


ERRORS = [
    (401, "authentication_error", {}, UpstreamAuthError, "auth"),
    (403, "permission_error", {}, UpstreamAuthError, "auth"),
    (404, "not_found_error", {}, ModelNotFound, "not_found"),
    (400, "invalid_request_error", {}, InvalidRequest, None),
    (413, "request_too_large", {}, RequestTooLarge, None),
    (429, "rate_limit_error", {"retry-after": "7"}, RateLimited, "rate_limit"),
    (529, "overloaded_error", {}, RateLimited, "capacity"),
    (500, "api_error", {}, UpstreamError, "server"),
]


@pytest.mark.parametrize(("status", "kind", "headers", "error", "failover"), ERRORS, ids=[str(e[0]) for e in ERRORS])
async def test_error_statuses_map_to_cfai_errors_without_the_key(status: int, kind: str, headers: dict[str, str],
                                                                  error: type[CfaiError], failover: str | None
                                                                  ) -> None:
    message = f"{kind}: bad things (key {KEY})"  # a provider may echo the key: it must not reach anyone
    claude = client(lambda request: httpx.Response(status, headers=headers, json=rec.error_body(kind, message)))
    for call in (claude.chat(chat()), claude.chat_stream(chat(stream=True))):
        with pytest.raises(error) as info:
            await call
        raised = info.value
        assert type(raised) is error
        for text in (str(raised), raised.message, json.dumps(raised.to_openai()), json.dumps(raised.to_anthropic())):
            assert KEY not in text
        assert f"claude error (HTTP {status}): {kind}: bad things" in raised.message
        assert failure_kind(raised) == failover
    await claude.aclose()
    if status == 429:
        assert raised.retry_after == 7
    if status == 529:  # an Anthropic route in front of cfai answers it as Anthropic's own overload
        assert (raised.anthropic_status, raised.anthropic_type) == (529, "overloaded_error")


@pytest.mark.parametrize("answer", [{"type": "error"}, {**rec.TEXT, "content": "hi"},
                                    {**rec.TEXT, "content": [{"type": "tool_use", "input": {}}]}])
async def test_an_answer_that_is_not_a_message_is_an_upstream_error(answer: dict[str, Any]) -> None:
    claude = client(lambda request: httpx.Response(200, json=answer))
    with pytest.raises(UpstreamError, match="claude answered with JSON that is not a Messages `message`"):
        await claude.chat(chat())
    await claude.aclose()


async def test_a_json_answer_to_a_stream_request_and_a_hang_are_errors() -> None:
    claude = client(lambda request: httpx.Response(200, json=rec.TEXT))
    with pytest.raises(UpstreamError, match="instead of text/event-stream"):
        await claude.chat_stream(chat(stream=True))
    await claude.aclose()
    slow = client(hang, timeout=0.2)
    with pytest.raises(UpstreamTimeout, match=r"claude did not answer within 0\.2 s"):
        await slow.chat(chat())
    await slow.aclose()
