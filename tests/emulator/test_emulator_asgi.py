"""The emulator's HTTP surface (emulator.asgi): what it sends is what Starlette sent, it serves uvicorn's lifespan
and a client that hangs up, and a text answer imports neither a web framework nor the other tasks' modules."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette import responses as starlette

from cfai_cli.emulator import audio, create_emulator_app, embeddings, guard, images, rerank
from cfai_cli.emulator.asgi import App, Request, Response, StreamingResponse
from cfai_cli.emulator.catalogue import TEXT_MODELS

pytestmark = pytest.mark.anyio

BASE = "http://offline.cfai.invalid/client/v4"
CASES: list[tuple[Any, int, dict[str, str] | None, str | None]] = [
    ('{"result": {}}', 200, None, "application/json"),
    ("é ünïcode", 400, {"X-Extra": "1", "cf-ai-neurons": "2.5"}, "application/json"),
    (b"<html>error</html>", 502, None, "text/html"),
    (b"\x89PNG", 200, None, "image/png"),
    ("already typed", 200, None, "text/plain; charset=latin-1"),
    ("their own type", 200, {"content-type": "text/csv"}, "text/plain"),
    (None, 204, None, None),
    (b"", 200, None, None),
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize(("content", "status", "headers", "media_type"), CASES)
def test_a_whole_body_has_starlettes_headers(content: Any, status: int, headers: dict[str, str] | None,
                                             media_type: str | None) -> None:
    ours = Response(content, status, headers, media_type)
    theirs = starlette.Response(content, status, headers, media_type)
    assert ours.body == theirs.body
    assert ours.raw_headers() == theirs.raw_headers
    # what code reading the response's headers sees (tests/replicas/standin.py hands on the content type)
    assert ours.headers.get("content-type") == theirs.headers.get("content-type")


@pytest.mark.parametrize("media_type", ["text/event-stream", "application/json", None])
def test_a_stream_has_starlettes_headers(media_type: str | None) -> None:
    headers = {"cache-control": "no-cache"}
    ours = StreamingResponse(iter([b"x"]), headers=headers, media_type=media_type)
    theirs = starlette.StreamingResponse(iter([b"x"]), headers=headers, media_type=media_type)
    assert ours.raw_headers(length=False) == theirs.raw_headers


async def served(app: App, scope: dict[str, Any], incoming: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What `app` sends for one request whose receive() gives `incoming`, then waits for the client to hang up."""
    sent: list[dict[str, Any]] = []
    hang_up = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if sum(m["type"] == "http.response.body" for m in sent) == 3:
            hang_up.set()  # the client leaves after the second chunk

    await asyncio.wait_for(app(scope, receive, send), 5)
    return sent


def http_scope(method: str = "GET", path: str = "/", query: bytes = b"",
               headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "query_string": query, "headers": headers or []}


async def test_a_slow_stream_stops_when_the_client_hangs_up() -> None:
    produced: list[int] = []

    async def slow() -> AsyncIterator[bytes]:
        for i in range(50):
            produced.append(i)
            await asyncio.sleep(0.01)
            yield f"data: {i}\n\n".encode()

    async def dispatch(request: Request) -> Response:
        return StreamingResponse(slow(), media_type="text/event-stream")

    sent = await served(App(dispatch), http_scope(), [{"type": "http.request", "body": b""}])
    bodies = [m["body"] for m in sent if m["type"] == "http.response.body"]
    assert bodies[:2] == [b"data: 0\n\n", b"data: 1\n\n"] and len(produced) < 10


async def test_the_request_is_read_as_starlette_read_it() -> None:
    seen: list[Request] = []

    async def dispatch(request: Request) -> Response:
        seen.append(request)
        return Response(b"ok")

    scope = http_scope("POST", "/a/b", b"x=1&y=&x=2", [(b"X-Twice", b"first"), (b"x-twice", b"second")])
    sent = await served(App(dispatch), scope, [{"type": "http.request", "body": b"he", "more_body": True},
                                               {"type": "http.request", "body": b"llo"}])
    request = seen[0]
    assert (request.method, request.path, request.body) == ("POST", "/a/b", b"hello")
    assert request.headers["x-twice"] == "first" and request.query_params == {"x": "2", "y": ""}
    assert sent[0] == {"type": "http.response.start", "status": 200,
                       "headers": [(b"content-length", b"2")]} and sent[1]["body"] == b"ok"


async def test_lifespan_is_acknowledged_and_a_websocket_refused() -> None:
    app = create_emulator_app()
    sent: list[dict[str, Any]] = []
    events = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive() -> dict[str, Any]:
        return events.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app({"type": "lifespan"}, receive, send), 5)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    await app({"type": "websocket", "path": "/"}, receive, send)
    assert sent[-1] == {"type": "websocket.close", "code": 1000}


async def test_a_method_the_route_never_took_gets_starlettes_405() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_emulator_app()), base_url=BASE) as client:
        answer = await client.request("TRACE", "/accounts/a/ai/run/@cf/meta/llama-3.1-8b-instruct")
    assert answer.status_code == 405 and answer.text == "Method Not Allowed"
    assert answer.headers["content-type"] == "text/plain; charset=utf-8" and "POST" in answer.headers["allow"]


def test_no_other_task_answers_a_text_model() -> None:
    """emulator.app answers a text model before asking the other tasks' modules (which it then need not import)."""
    others = set(embeddings.MODELS) | guard.MODELS | rerank.MODELS | audio.MODELS | images.MODELS
    assert not others & set(TEXT_MODELS)


def test_a_text_answer_imports_no_framework_and_no_other_task() -> None:
    """What `cfai chat --offline` pays for: the emulator, its text dialect and nothing of starlette, anyio or the
    embeddings, images, audio, guard, rerank and queue modules (a fresh interpreter, so nothing is imported yet)."""
    script = f"""
import asyncio, sys, httpx
from cfai_cli.emulator import create_emulator_app

async def main():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_emulator_app())) as client:
        for stream in (False, True):
            answer = await client.post("{BASE}/accounts/a/ai/run/@cf/meta/llama-3.1-8b-instruct",
                                       headers={{"authorization": "Bearer t"}},
                                       json={{"prompt": "hi", "stream": stream}})
            assert answer.status_code == 200 and "hi" in answer.text, answer.text

asyncio.run(main())
loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("starlette", "anyio", "python_multipart")
                or name.startswith("cfai_cli.emulator.") and name.rsplit(".", 1)[1] in (
                    "embeddings", "images", "audio", "sound", "guard", "rerank", "queue", "chat", "responses"))
print(",".join(loaded))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == ""
