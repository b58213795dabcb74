"""Policies judge what actually runs: model restrictions after defaults, aliases and routes whatever the
body's spelling, rate limits charged per upstream call, tokens from what was spent, and per-key and
per-request bounds on concurrency. Each test fails on a proxy that reads the raw body a second time."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import httpx
import pytest

from cfai_cli.server.app import create_app
from cfai_cli.service.record import MAX_CONCURRENT_CALLS
from cfai_cli.settings import Settings
from cfai_cli.store.keys import KeyPolicy, KeyStore
from cfai_cli.store.usage import UsageLog
from tests.audio_fixtures import tone_wav
from tests.fake_workers import native_text
from tests.server.conftest import offline

pytestmark = pytest.mark.anyio

LLAMA = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi there"}]}


def key_for(settings: Settings, **policy: Any) -> dict[str, str]:
    key, _ = KeyStore(settings.database).create("t", KeyPolicy(**policy))
    return {"Authorization": f"Bearer {key}"}


def _refused(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "model_not_allowed"


async def test_the_default_model_is_judged(settings: Settings) -> None:
    """A Responses request without `model` runs the default model: the key's patterns judge that."""
    meta_only = key_for(settings, models=("@cf/qwen/*",))
    async with offline(settings) as client:
        refused = await client.post("/v1/responses", json={"input": "hi"}, headers=meta_only)
        allowed = await client.post("/v1/responses", headers=meta_only,
                                    json={"input": "hi", "model": "@cf/qwen/qwen3-30b-a3b-fp8"})
    _refused(refused)
    assert allowed.status_code == 200, allowed.text


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_the_content_type_does_not_hide_the_model(settings: Settings, content_type: str | None) -> None:
    import json

    headers = key_for(settings, models=("gpt-4o-mini",))
    if content_type:
        headers["Content-Type"] = content_type
    async with offline(settings) as client:
        response = await client.post("/v1/chat/completions", headers=headers,
                                     content=json.dumps({**CHAT, "model": "gpt-4o"}).encode())
    # Refused either for the model or for the content type; never answered by gpt-4o.
    assert response.status_code in (403, 415), response.text
    assert "x-cfai-model" not in response.headers


async def test_a_multipart_model_field_however_spelled(settings: Settings) -> None:
    """`name=model` without quotes, extra headers in the part: the parsed form is what is judged."""
    headers = key_for(settings, models=("@cf/openai/whisper-tiny-en",))
    boundary = "xyzBOUNDARYxyz"
    wav = tone_wav(0.5)
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=model\r\nX-Extra: 1\r\n\r\nwhisper-1\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
            f"Content-Type: audio/wav\r\n\r\n").encode() + wav + f"\r\n--{boundary}--\r\n".encode()
    headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    async with offline(settings) as client:
        response = await client.post("/v1/audio/transcriptions", headers=headers, content=body)
    _refused(response)


async def test_aliases_are_judged_by_the_model_they_run(settings: Settings) -> None:
    meta = key_for(settings, models=("@cf/meta/*",))
    async with offline(settings) as client:
        llama_alias = await client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-4"}, headers=meta)
        gpt_oss_alias = await client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-5"}, headers=meta)
        streamed = await client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-5", "stream": True},
                                     headers=meta)
        completions = await client.post("/v1/completions", json={"model": "gpt-5", "prompt": "x"}, headers=meta)
        embeddings = await client.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x"},
                                       headers=meta)
        tokenize = await client.post("/v1/tokenize", json={"model": "gpt-5", "input": "x"}, headers=meta)
    assert llama_alias.status_code == 200, llama_alias.text
    for refused in (gpt_oss_alias, streamed, completions, embeddings, tokenize):
        _refused(refused)
    assert "gpt-oss" in gpt_oss_alias.json()["error"]["message"]


async def test_routes_skip_targets_the_key_may_not_use(settings: Settings, tmp_path: Any) -> None:
    from cfai_cli.core.config_file import parse_routing

    routing = parse_routing({"routes": {"fast": ["@cf/qwen/qwen3-30b-a3b-fp8", LLAMA]}}, source="test")
    settings = replace(settings, routing=routing)
    meta = key_for(settings, models=("@cf/meta/*",))
    named = key_for(settings, models=("fast",))
    async with offline(settings) as client:
        skipped = await client.post("/v1/chat/completions", json={**CHAT, "model": "fast"}, headers=meta)
        by_name = await client.post("/v1/chat/completions", json={**CHAT, "model": "fast"}, headers=named)
    assert skipped.status_code == 200 and skipped.headers["x-cfai-model"] == LLAMA
    assert by_name.status_code == 200 and by_name.headers["x-cfai-model"] == "@cf/qwen/qwen3-30b-a3b-fp8"


async def test_fan_out_is_charged_per_upstream_call(settings: Settings) -> None:
    async with offline(settings) as client:
        three = key_for(settings, rpm=3)
        too_many = await client.post("/v1/completions", json={"model": LLAMA, "prompt": ["a", "b", "c", "d"]},
                                     headers=three)
        exactly = await client.post("/v1/completions", json={"model": LLAMA, "prompt": ["a", "b"], "n": 1},
                                    headers=three)
        spent = await client.post("/v1/completions", json={"model": LLAMA, "prompt": ["a", "b"]}, headers=three)
        choices = key_for(settings, rpm=4)
        n_five = await client.post("/v1/chat/completions", json={**CHAT, "n": 5}, headers=choices)
        batches = key_for(settings, rpm=2)
        two_batches = await client.post("/v1/embeddings", headers=batches,
                                        json={"model": "text-embedding-3-small", "input": ["x"] * 150})
        third = await client.post("/v1/embeddings", headers=batches,
                                  json={"model": "text-embedding-3-small", "input": ["x"] * 10})
        images = key_for(settings, rpm=3)
        four_images = await client.post("/v1/images/generations", json={"prompt": "a fox", "n": 4}, headers=images)
    assert too_many.status_code == 429 and too_many.json()["error"]["code"] == "rate_limit_exceeded"
    assert exactly.status_code == 200, exactly.text
    assert spent.status_code == 429  # 2 of the minute's 3 were spent, and this needs 2
    assert n_five.status_code == 429
    assert two_batches.status_code == 200 and third.status_code == 429
    assert four_images.status_code == 429


async def test_tokens_count_whether_or_not_the_client_asked_to_see_them(settings: Settings) -> None:
    headers = key_for(settings, tpm=20)
    async with offline(settings) as client:
        first = await client.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers=headers)
        assert first.status_code == 200 and '"usage"' not in first.text  # the client did not ask to see usage
        second = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
    assert second.status_code == 429 and "tokens per minute" in second.json()["error"]["message"]
    rows = [r for r in UsageLog(settings.database).rows(since=0) if r.status == 200]
    assert rows and rows[0].prompt_tokens > 0 and rows[0].completion_tokens > 0
    assert rows[0].model == "gpt-4o-mini" and rows[0].upstream_model == "@cf/meta/llama-3.1-8b-instruct-fast"


async def test_tokens_of_a_stream_the_client_hung_up_on_still_count(settings: Settings) -> None:
    headers = key_for(settings)
    async with offline(settings) as client, client.stream(
            "POST", "/v1/chat/completions", json={**CHAT, "stream": True}, headers=headers) as response:
        async for _ in response.aiter_lines():
            break  # hang up after the first line
    rows = UsageLog(settings.database).rows(since=0)
    assert rows and rows[0].prompt_tokens > 0


class _Held:
    """A Workers AI stand-in that holds each call until released, counting calls in flight."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.now = 0
        self.most = 0
        self.total = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.now += 1
        self.total += 1
        self.most = max(self.most, self.now)
        try:
            await self.release.wait()
        finally:
            self.now -= 1
        return native_text("done")(request, {})


async def test_one_key_cannot_take_every_slot(settings: Settings) -> None:
    held = _Held()
    greedy, other = key_for(settings), key_for(settings)
    app = create_app(replace(settings, max_in_flight_per_key=3), transport=httpx.MockTransport(held))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test") as client:
        body = {**CHAT, "model": LLAMA}
        waiting = [asyncio.create_task(client.post("/v1/chat/completions", json=body, headers=greedy))
                   for _ in range(3)]
        while held.now < 3:
            await asyncio.sleep(0.01)
        refused = await client.post("/v1/chat/completions", json=body, headers=greedy)
        flowing = asyncio.create_task(client.post("/v1/chat/completions", json=body, headers=other))
        while held.now < 4:
            await asyncio.sleep(0.01)
        held.release.set()
        done = await asyncio.gather(*waiting, flowing)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_requests_in_flight"
    assert refused.headers["retry-after"] == "1"
    assert [d.status_code for d in done] == [200] * 4


async def test_one_request_runs_a_bounded_number_of_upstream_calls_at_once(settings: Settings) -> None:
    held = _Held()
    key = key_for(settings)
    app = create_app(settings, transport=httpx.MockTransport(held))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test") as client:
        task = asyncio.create_task(client.post("/v1/completions", headers=key,
                                               json={"model": LLAMA, "prompt": [f"p{i}" for i in range(20)]}))
        while held.now < MAX_CONCURRENT_CALLS:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # the others would have started by now if nothing held them back
        assert held.now == MAX_CONCURRENT_CALLS
        held.release.set()
        answer = await task
    assert answer.status_code == 200 and len(answer.json()["choices"]) == 20
    assert held.most == MAX_CONCURRENT_CALLS and held.total == 20


async def test_the_per_request_vision_pick_is_judged(settings: Settings) -> None:
    """gpt-5 runs gpt-oss for text but a vision model for images: a key limited to gpt-oss gets text only."""
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
    image = {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                         {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}]}
    gpt_oss = key_for(settings, models=("@cf/openai/gpt-oss-*",))
    google = key_for(settings, models=("@cf/google/*",))
    async with offline(settings) as client:
        text = await client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-5"}, headers=gpt_oss)
        seeing = await client.post("/v1/chat/completions", json={"model": "gpt-5", "messages": [image]},
                                   headers=gpt_oss)
        allowed = await client.post("/v1/chat/completions", json={"model": "gpt-5", "messages": [image]},
                                    headers=google)
    assert text.status_code == 200, text.text
    _refused(seeing)
    assert allowed.status_code == 200 and allowed.headers["x-cfai-model"].startswith("@cf/google/gemma-4")
