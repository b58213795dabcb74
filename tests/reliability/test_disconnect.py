"""Client disconnects cancel the upstream request at once, under a real uvicorn server on 127.0.0.1.

The fake upstream counts its open streams (up on start, down in the generator's `finally`, which runs when
the proxy closes the upstream response). 200 clients each read the first bytes of a stream and hang up;
within a second no upstream stream may be left open, the proxy's in-flight count is back to zero, and file
descriptors are back near their baseline. Half the upstreams trickle tokens, half stall after the first one
(a proxy that only notices a gone client when it next writes would keep those open until the deadline).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
import uvicorn

from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings
from tests.fake_workers import FakeWorkers, native_text

pytestmark = pytest.mark.anyio

LLAMA = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
CLIENTS = 200


class CountingUpstream:
    def __init__(self) -> None:
        self.open = 0
        self.opened = 0

    def handle(self, request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        stall = self.opened % 2 == 1
        self.opened += 1

        async def stream() -> AsyncIterator[bytes]:
            self.open += 1
            try:
                yield b'data: {"response": "first"}\n\n'
                while True:
                    await asyncio.sleep(60 if stall else 0.05)
                    yield b'data: {"response": " more"}\n\n'
            finally:
                self.open -= 1

        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=stream())


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@contextlib.asynccontextmanager
async def served(settings: Settings, fake: FakeWorkers) -> AsyncIterator[str]:
    app = create_app(replace(settings, timeout=120.0), no_auth=True, transport=fake.transport())
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on",
                            backlog=CLIENTS * 2)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
        if task.done():
            task.result()
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def in_flight(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    (line,) = [line for line in text.splitlines() if line.startswith("cfai_in_flight_requests")]
    return float(line.split()[-1])


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to count file descriptors")
async def test_hundreds_of_clients_hanging_up_mid_stream_release_everything(settings: Settings,
                                                                            fake: FakeWorkers) -> None:
    upstream = CountingUpstream()
    fake.models[LLAMA] = upstream.handle
    body = {"model": LLAMA, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    async with served(settings, fake) as url, httpx.AsyncClient(base_url=url) as probe:
        fake.models["@cf/meta/llama-3.1-8b-instruct-fast"] = native_text("warm")
        assert (await probe.post("/v1/chat/completions", json={**body, "model": "gpt-4o-mini"})).status_code == 200
        baseline = open_fds()

        async def hang_up(started: asyncio.Event) -> None:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client, \
                        client.stream("POST", "/v1/chat/completions", json=body) as response:
                assert response.status_code == 200
                async for chunk in response.aiter_bytes():
                    assert b"first" in chunk or b"role" in chunk
                    break
                await started.wait()  # every client is mid-stream before any hangs up

        started = asyncio.Event()
        clients = [asyncio.create_task(hang_up(started)) for _ in range(CLIENTS)]
        deadline = time.monotonic() + 20
        while upstream.open < CLIENTS and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert upstream.open == CLIENTS, f"only {upstream.open} streams open at once"
        assert await in_flight(probe) == CLIENTS
        hung_up = time.monotonic()
        started.set()
        await asyncio.gather(*clients)

        while upstream.open and time.monotonic() - hung_up < 1.0:
            await asyncio.sleep(0.01)
        assert upstream.open == 0, f"{upstream.open} upstream streams still open 1 s after the clients left"
        assert await in_flight(probe) == 0
        await asyncio.sleep(0.2)
        assert open_fds() <= baseline + 5, (baseline, open_fds())

        # And the server still answers correctly.
        fake.models[LLAMA] = native_text("still here")
        after = await probe.post("/v1/chat/completions", json={**body, "stream": False})
        assert after.json()["choices"][0]["message"]["content"] == "still here"
