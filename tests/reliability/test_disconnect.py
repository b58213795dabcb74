"""Client disconnects cancel the upstream request at once, under a real uvicorn server on 127.0.0.1.

The fake upstream counts its open streams (up on start, down in the generator's `finally`, which runs when
the proxy closes the upstream response). 200 clients each read the first bytes of a stream and hang up;
within a second no upstream stream may be left open, the proxy's in-flight count is back to zero, and file
descriptors are back near their baseline. Half the upstreams trickle tokens, half stall after the first one
(a proxy that only notices a gone client when it next writes would keep those open until the deadline).

Finished streams must give their upstream connection back too, and hung-up ones must close theirs: that needs
the real connection pool, so the last tests talk to a raw HTTP/1.1 upstream on 127.0.0.1 instead of the
in-process fake, through cfai's transport and through httpx's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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
async def served(settings: Settings, fake: FakeWorkers | None,
                 transport: httpx.AsyncBaseTransport | None = None) -> AsyncIterator[str]:
    """A real uvicorn server on the app; without `fake`, the app talks to `settings.api_base` over TCP
    (through `transport`, or the proxy's default one)."""
    transport = fake.transport() if fake is not None else transport
    app = create_app(replace(settings, timeout=120.0), no_auth=True, transport=transport)
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
    # The probe opens a connection per request: it sits idle while 200 clients connect (seconds on a loaded
    # machine), longer than the server keeps an idle connection, and a reused one could be closed under it.
    fresh = httpx.Limits(max_keepalive_connections=0)
    async with served(settings, fake) as url, httpx.AsyncClient(base_url=url, limits=fresh) as probe:
        fake.models["@cf/meta/llama-3.1-8b-instruct-fast"] = native_text("warm")
        assert (await probe.post("/v1/chat/completions", json={**body, "model": "gpt-4o-mini"})).status_code == 200
        baseline = open_fds()

        async def hang_up(started: asyncio.Event) -> None:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client, \
                        client.stream("POST", "/v1/chat/completions", json=body) as response:
                assert response.status_code == 200
                chunks = response.aiter_bytes()  # kept: dropping it mid-stream would hang up at once
                chunk = await anext(chunks)
                assert b"first" in chunk or b"role" in chunk
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


class CountedTcp:
    """A raw HTTP/1.1 Workers AI on 127.0.0.1 that counts its open connections; `serve` answers on one."""

    def __init__(self) -> None:
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.serve(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.connections -= 1
            writer.close()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    @staticmethod
    async def read_request(reader: asyncio.StreamReader) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        await reader.readexactly(length)


class TcpUpstream(CountedTcp):
    """Chunked SSE streams on keep-alive connections.

    It answers in rounds of `batch` requests, all at once, and waits one of `tails` seconds after
    `data: [DONE]` before the chunk that ends the body: the proxy drains what follows [DONE] for a short
    while (to reuse the connection), and the tails spread the end of the body across the end of that window.
    """

    def __init__(self, batch: int, tails: list[float]) -> None:
        super().__init__()
        self.batch, self.tails = batch, tails
        self.served = 0
        self.arrived = 0
        self.rounds: dict[int, asyncio.Event] = {}

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await self.read_request(reader)
            round_, place = divmod(self.arrived, self.batch)
            self.arrived += 1
            everyone = self.rounds.setdefault(round_, asyncio.Event())
            if self.arrived % self.batch == 0:
                everyone.set()
            await everyone.wait()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                         b"transfer-encoding: chunked\r\n\r\n")
            for event in ({"response": "ok"}, {"response": "", "usage": {"prompt_tokens": 1,
                          "completion_tokens": 1, "total_tokens": 2}}, "[DONE]"):
                data = f"data: {event if isinstance(event, str) else json.dumps(event)}\n\n".encode()
                writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()
            # Counted once the answer is out: a tail past the proxy's window finds the connection closed (the
            # faster the proxy reaches [DONE], the more tails do), and its write may fail or come after the check.
            self.served += 1
            await asyncio.sleep(self.tails[place % len(self.tails)])
            writer.write(b"0\r\n\r\n")
            await writer.drain()


@pytest.mark.parametrize("upstream_transport", ["httpx", "default"])
async def test_finished_streams_give_their_upstream_connection_back(settings: Settings,
                                                                    upstream_transport: str) -> None:
    """A stream that ended cleanly either returns its upstream connection to the pool or closes it.

    Rounds of 40 concurrent streams whose upstream bodies end around the end of the proxy's drain window.
    A drain timeout that is a native asyncio cancellation can land inside httpcore's release of the
    connection, which httpcore shields from anyio cancellation only: the connection then stays checked out
    of the pool, socket open, for good (bench/soak.py saw ~100 extra file descriptors after 30 s). Each
    round needs 40 connections at most, idle ones being reused; any connection beyond 40 is a leaked one.
    "httpx" is httpx's own transport (httpcore), which the proxy uses when `fast_http` is off or a proxy
    is configured; "default" is whatever the proxy uses out of the box.
    """
    batch, rounds = 40, 10
    upstream = TcpUpstream(batch, tails=[0.044 + 0.002 * i for i in range(11)])
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0, backlog=batch * 2)
    port = server.sockets[0].getsockname()[1]
    settings = replace(settings, api_base=f"http://127.0.0.1:{port}/client/v4")
    body = {"model": LLAMA, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    limits = httpx.Limits(max_connections=batch, max_keepalive_connections=batch)
    pool = httpx.Limits(max_connections=512, max_keepalive_connections=512)  # as the proxy builds its own
    transport = httpx.AsyncHTTPTransport(limits=pool) if upstream_transport == "httpx" else None
    try:
        async with served(settings, None, transport) as url, \
                httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

            async def stream() -> None:
                response = await client.post("/v1/chat/completions", json=body)
                assert response.status_code == 200 and response.text.endswith("data: [DONE]\n\n")

            for _ in range(rounds):
                await asyncio.gather(*(stream() for _ in range(batch)))
            assert upstream.served == batch * rounds
            deadline = time.monotonic() + 1.0
            while upstream.connections > batch and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert upstream.connections <= batch, f"{upstream.connections - batch} upstream connections leaked"
    finally:
        server.close()


class StallingTcpUpstream(CountedTcp):
    """Sends a stream's first event, then nothing until the proxy hangs up."""

    def __init__(self) -> None:
        super().__init__()
        self.streaming = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.read_request(reader)
        data = b'data: {"response": "first"}\n\n'
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                     + b"%x\r\n%s\r\n" % (len(data), data))
        await writer.drain()
        self.streaming += 1
        await reader.read()  # b"" once the proxy closes the connection


@pytest.mark.parametrize("upstream_transport", ["httpx", "default"])
async def test_clients_hanging_up_close_their_upstream_connections(settings: Settings,
                                                                   upstream_transport: str) -> None:
    """Over real sockets, with either upstream transport: a client that hangs up mid-stream makes the proxy
    close its upstream connection (an unfinished body cannot be reused) within a second."""
    clients = 40
    upstream = StallingTcpUpstream()
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0, backlog=clients * 2)
    port = server.sockets[0].getsockname()[1]
    settings = replace(settings, api_base=f"http://127.0.0.1:{port}/client/v4")
    body = {"model": LLAMA, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    pool = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    transport = httpx.AsyncHTTPTransport(limits=pool) if upstream_transport == "httpx" else None
    try:
        async with served(settings, None, transport) as url, httpx.AsyncClient(base_url=url) as probe:

            async def hang_up(started: asyncio.Event) -> None:
                async with httpx.AsyncClient(base_url=url, timeout=30) as client, \
                        client.stream("POST", "/v1/chat/completions", json=body) as response:
                    assert response.status_code == 200
                    chunks = response.aiter_bytes()  # kept: dropping it would hang up at once
                    assert b"first" in await anext(chunks) or b"first" in await anext(chunks)
                    await started.wait()

            started = asyncio.Event()
            tasks = [asyncio.create_task(hang_up(started)) for _ in range(clients)]
            deadline = time.monotonic() + 20
            while upstream.streaming < clients and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert upstream.connections == clients
            started.set()
            await asyncio.gather(*tasks)
            hung_up = time.monotonic()
            while upstream.connections and time.monotonic() - hung_up < 1.0:
                await asyncio.sleep(0.01)
            assert upstream.connections == 0, f"{upstream.connections} upstream connections open 1 s after"
            assert await in_flight(probe) == 0
    finally:
        server.close()
