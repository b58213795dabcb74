"""Capacity: a configurable upstream pool sized for hundreds of streams, and a clear 503 + Retry-After beyond the
concurrency cap instead of unbounded queueing (streams held open under a real uvicorn server).
200 streams held at once on one worker are proven by test_disconnect.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from cfai_cli.service.context import open_context
from cfai_cli.settings import Settings, load_settings
from cfai_cli.upstream.transport import LeanTransport
from tests.fake_workers import FakeWorkers, native_text
from tests.openai_schema import validate
from tests.reliability.test_disconnect import LLAMA, CountingUpstream, served

pytestmark = pytest.mark.anyio
CAP = 40


async def test_streams_beyond_the_cap_get_503_with_retry_after_and_held_streams_finish(
        settings: Settings, fake: FakeWorkers) -> None:
    upstream = CountingUpstream()
    fake.models[LLAMA] = upstream.handle
    body = {"model": LLAMA, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    async with served(replace(settings, max_concurrency=CAP), fake) as url, \
            httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=CAP + 20)) as client:
        release = asyncio.Event()

        async def hold() -> int:
            async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                # Keep the iterator: breaking out of `async for` drops it, and its finalizer closes the
                # unread connection (httpcore), so the stream would not be held and the cap never reached.
                chunks = response.aiter_bytes()
                await anext(chunks)
                await release.wait()
                return response.status_code

        holders = [asyncio.create_task(hold()) for _ in range(CAP)]
        async with asyncio.timeout(30):  # fail, never hang
            while upstream.open < CAP:
                await asyncio.sleep(0.02)
        # Fresh connections for the refused ones: the 503 closes its connection (its body is left unread).
        async with httpx.AsyncClient(base_url=url, timeout=30) as other:
            refused = await asyncio.gather(*(other.post("/v1/chat/completions", json=body,
                                                        headers={"Connection": "close"}) for _ in range(10)))
        for response in refused:
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            validate(response.json(), "ErrorResponse")
            assert response.json()["error"]["code"] == "overloaded"
        assert upstream.opened == CAP  # refused requests never reached the upstream
        assert (await client.get("/health")).status_code == 200  # health is never capped
        release.set()
        assert await asyncio.gather(*holders) == [200] * CAP
        async with asyncio.timeout(30):
            while upstream.open:
                await asyncio.sleep(0.02)
        fake.models[LLAMA] = native_text("room again")
        again = await client.post("/v1/chat/completions", json={**body, "stream": False})
        assert again.json()["choices"][0]["message"]["content"] == "room again"


def _pool_size(ctx: Any) -> int:
    transport = ctx.router.lanes[0].provider._transport
    if isinstance(transport, LeanTransport):  # fast_http (the default)
        return transport.max_connections
    return int(transport._pool._max_connections)  # httpx's own pool: the limit it was built with


async def test_the_upstream_pool_is_sized_for_the_cap_and_configurable(tmp_path: Path) -> None:
    base = {"account_id": "0123abcd", "api_token": "t"}
    default = load_settings(base, environ={"CFAI_HOME": str(tmp_path)})
    assert default.max_connections >= default.max_concurrency >= 200
    async with open_context(default) as ctx:
        assert _pool_size(ctx) == default.max_connections
    (tmp_path / "config.toml").write_text("max_connections = 1000\n")
    async with open_context(load_settings(base, environ={"CFAI_HOME": str(tmp_path)})) as ctx:
        assert _pool_size(ctx) == 1000
