"""How answers reach the socket through `cfai serve`'s HTTP protocol (server.protocol): the response head leaves
in the same write as the first body bytes, so a JSON answer is one write and a stream's first event arrives
with its headers. The real uvicorn protocol (HeadTimeoutProtocol) and the real app, over a transport that
records each write instead of a socket (a client cannot tell writes apart: TCP may merge them)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState

from cfai_cli.server.app import create_app
from cfai_cli.server.protocol import HeadTimeoutProtocol, HeadWithBody
from cfai_cli.settings import Settings
from tests.fake_workers import FakeWorkers, native_text

pytestmark = pytest.mark.anyio

MODEL = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn's protocol runs on asyncio


class Recorder(asyncio.Transport):
    """A connection's transport that keeps what is written, write by write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def exchange(app: Any, request: bytes, *, done: bytes = b"0\r\n\r\n", seconds: float = 10.0) -> Recorder:
    """Send `request` on one connection through the protocol; return once the answer has ended in `done`."""
    config = uvicorn.Config(app=app, lifespan="off", log_level="warning")
    protocol = HeadTimeoutProtocol(config=config, server_state=ServerState(), app_state={})
    transport = Recorder()
    protocol.connection_made(transport)
    protocol.data_received(request)
    async with asyncio.timeout(seconds):
        while not b"".join(transport.writes).endswith(done):
            await asyncio.sleep(0.001)
    await asyncio.sleep(0.01)  # anything the protocol still writes after the answer
    protocol.connection_lost(None)
    return transport


def post(body: dict[str, Any], api_key: str) -> bytes:
    raw = json.dumps(body).encode()
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy.test\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + api_key.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(raw) + raw)


async def test_a_json_answer_is_one_write_with_its_head(settings: Settings, api_key: str, fake: FakeWorkers) -> None:
    fake.models[MODEL] = native_text("hello there")
    app = create_app(settings, transport=fake.transport())
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    async with app.router.lifespan_context(app):
        transport = await exchange(app, post(body, api_key), done=b"}")
    assert len(transport.writes) == 1, [w[:40] for w in transport.writes]
    head, _, answer = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert json.loads(answer)["choices"][0]["message"]["content"] == "hello there"


async def test_a_streams_first_event_leaves_with_its_headers(settings: Settings, api_key: str,
                                                              fake: FakeWorkers) -> None:
    fake.models[MODEL] = native_text("one two three")
    app = create_app(settings, transport=fake.transport())
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with app.router.lifespan_context(app):
        transport = await exchange(app, post(body, api_key))
    head, _, first = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"text/event-stream" in head
    assert b"data: {" in first  # the first event, in the same write as the headers
    whole = b"".join(transport.writes)
    assert whole.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n") and whole.count(b"HTTP/1.1") == 1


async def test_a_head_with_no_body_yet_is_not_held_past_the_loops_turn() -> None:
    """An app that starts its answer and then waits: the head goes out before the wait ends."""
    head_sent = asyncio.Event()
    writes_at_body: list[int] = []
    transport_ref: list[Recorder] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        head_sent.set()
        await asyncio.sleep(0.05)
        writes_at_body.append(len(transport_ref[0].writes))
        await send({"type": "http.response.body", "body": b"late", "more_body": False})

    config = uvicorn.Config(app=app, lifespan="off", log_level="warning")
    protocol = HeadTimeoutProtocol(config=config, server_state=ServerState(), app_state={})
    transport = Recorder()
    transport_ref.append(transport)
    protocol.connection_made(transport)
    protocol.data_received(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    async with asyncio.timeout(5):
        while not b"".join(transport.writes).endswith(b"late\r\n0\r\n\r\n"):
            await asyncio.sleep(0.001)
    protocol.connection_lost(None)
    assert writes_at_body == [1]  # the head alone, written while the app waited
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and transport.writes[0].endswith(b"\r\n\r\n")
    assert transport.writes[1] == b"4\r\nlate\r\n0\r\n\r\n"


async def test_100_continue_goes_at_once_and_the_head_then_rides_with_the_body() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": message["body"][:2]})

    request = b"POST /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok"
    transport = await exchange(app, request, done=b"ok")
    assert transport.writes[0] == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert len(transport.writes) == 2 and transport.writes[1].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[1].endswith(b"\r\n\r\nok")


async def test_a_held_head_is_written_before_the_connection_closes() -> None:
    class Loop:
        def call_soon(self, *args: object) -> None:  # the loop's turn never comes: only close() can flush
            pass

    class Cycle:
        response_started = True

    transport = Recorder()
    writer = HeadWithBody(transport, Cycle(), Loop())  # type: ignore[arg-type]
    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert transport.writes == []
    writer.close()
    assert transport.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"] and transport.closed


async def test_a_large_body_is_not_copied_into_the_heads_write() -> None:
    class Cycle:
        response_started = True

    transport = Recorder()
    writer = HeadWithBody(transport, Cycle(), asyncio.get_running_loop())  # type: ignore[arg-type]
    big = b"x" * HeadWithBody.JOIN_BELOW
    writer.write(b"HEAD\r\n\r\n")
    writer.write(big)
    writer.write(b"more")
    assert transport.writes == [b"HEAD\r\n\r\n", big, b"more"]
