"""Through the proxy: an upstream answer beyond upstream.whole's cap, or a stream event beyond core.sse's, ends
as OpenAI's error (a 502 before anything was sent; an error event once a stream has started), never as a
traceback or an answer held without end. The caps are lowered for the test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from cfai_cli.core import sse
from cfai_cli.upstream import whole
from tests.fake_workers import FakeWorkers, envelope

pytestmark = pytest.mark.anyio

MODEL = "@cf/meta/llama-3.1-8b-instruct"
LIMIT = 4096


@pytest.fixture(autouse=True)
def small_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(whole, "MAX_ANSWER_BYTES", LIMIT)
    monkeypatch.setattr(sse, "MAX_EVENT_CHARS", LIMIT)


def talker(text: str) -> Any:
    def handler(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        if body.get("stream"):
            async def events() -> AsyncIterator[bytes]:  # a first event, then one that never ends
                yield b'data: {"response":"hi"}\n\n'
                yield b'data: {"response":"' + text.encode()

            return httpx.Response(200, content=events(), headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json=envelope({"response": text}))
    return handler


async def test_a_chat_answer_beyond_the_cap_is_a_502_in_openais_words(proxy, fake: FakeWorkers) -> None:
    fake.models[MODEL] = talker("x" * LIMIT)
    async with proxy() as client:
        answer = await client.post("/v1/chat/completions", json={"model": MODEL, "messages": [
            {"role": "user", "content": "hi"}]})
        assert answer.status_code == 502
        error = answer.json()["error"]
        assert error["code"] == "upstream_answer_too_large" and "4,096 bytes" in error["message"]
        assert len(fake.calls) == 1  # not retried
        fake.models[MODEL] = talker("small")
        fine = await client.post("/v1/chat/completions", json={"model": MODEL, "messages": [
            {"role": "user", "content": "hi"}]})
        assert fine.status_code == 200 and fine.json()["choices"][0]["message"]["content"] == "small"


async def test_a_stream_event_never_ended_stops_the_stream_with_an_error_event(proxy, fake: FakeWorkers) -> None:
    fake.models[MODEL] = talker("y" * LIMIT)
    async with proxy() as client:
        answer = await client.post("/v1/chat/completions", json={"model": MODEL, "stream": True, "messages": [
            {"role": "user", "content": "hi"}]})
        text = answer.text
        assert '"content":"hi"' in text and "without ending it" in text and "y" * 100 not in text
