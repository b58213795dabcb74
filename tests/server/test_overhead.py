"""x-cfai-overhead-ms: the proxy's own time on each answer, with the time spent waiting on Workers AI left out."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings
from tests.fake_workers import envelope, sse

pytestmark = pytest.mark.anyio

UPSTREAM_SECONDS = 0.5


USAGE = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}


async def slow_upstream(request: httpx.Request) -> httpx.Response:
    await asyncio.sleep(UPSTREAM_SECONDS)
    if json.loads(request.content).get("stream"):
        events = sse({"response": "hi"}, {"response": "", "usage": USAGE})
        return httpx.Response(200, content=events, headers={"content-type": "text/event-stream"})
    return httpx.Response(200, json=envelope({"response": "hi", "usage": USAGE}))


@pytest.mark.parametrize("stream", [False, True])
async def test_overhead_header_leaves_out_the_upstream_wait(settings: Settings, api_key: str, stream: bool) -> None:
    app = create_app(settings, transport=httpx.MockTransport(slow_upstream))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test",
            headers={"Authorization": f"Bearer {api_key}"}) as client:
        answer = await client.post("/v1/chat/completions", json={
            "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": stream})
        assert answer.status_code == 200, answer.text
        overhead = float(answer.headers["x-cfai-overhead-ms"])
        # The 500 ms the upstream took is not the proxy's: what remains is its own work (well under it).
        assert 0 <= overhead < UPSTREAM_SECONDS * 1000 * 0.8
        # Errors the proxy answers itself carry it too.
        refused = await client.post("/v1/chat/completions", json={}, headers={"Authorization": "Bearer sk-proj-x"})
        assert refused.status_code == 401 and float(refused.headers["x-cfai-overhead-ms"]) >= 0


async def test_a_stream_is_written_once_per_upstream_read_not_once_per_token(settings: Settings) -> None:
    """20 tokens that arrive in one upstream read leave in one body message (plus the end), byte for byte."""
    words = [f" w{i}" for i in range(20)]

    async def burst(request: httpx.Request) -> httpx.Response:
        events = sse(*({"response": w} for w in words), {"response": "", "usage": USAGE})
        return httpx.Response(200, content=events, headers={"content-type": "text/event-stream"})

    app = create_app(settings, no_auth=True, transport=httpx.MockTransport(burst))
    bodies: list[bytes] = []

    async def counting(scope, receive, send):  # type: ignore[no-untyped-def]
        async def watched(message):  # type: ignore[no-untyped-def]
            if message["type"] == "http.response.body" and message.get("body"):
                bodies.append(message["body"])
            await send(message)

        await app(scope, receive, watched)

    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=counting), base_url="http://127.0.0.1") as client:
        answer = await client.post("/v1/chat/completions", json={
            "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    events = [json.loads(line[6:]) for line in answer.text.split("\n")
              if line.startswith("data: {")]
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"]) == "".join(words)
    assert len(bodies) <= 4  # the 20 tokens, the finish, [DONE]: not 22 sends
