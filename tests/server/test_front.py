"""The app's one middleware layer (server.front): each piece applies to an answer in the order the seven ASGI
layers did, and a refusal passes only the pieces before the one that refused.

Raw ASGI calls, so the header lists are seen in order, as a server writes them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest

from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings
from cfai_cli.store.keys import KeyPolicy, KeyStore

pytestmark = pytest.mark.anyio
Message = dict[str, Any]
CHAT = json.dumps({"model": "@cf/meta/llama-3.1-8b-instruct-fast",
                   "messages": [{"role": "user", "content": "hi"}]}).encode()
SECURITY = [b"x-content-type-options", b"referrer-policy", b"x-frame-options", b"content-security-policy",
            b"cache-control"]


@asynccontextmanager
async def serving(settings: Settings, **options: Any) -> AsyncIterator[Any]:
    app = create_app(settings.as_offline(), **options)
    async with app.router.lifespan_context(app):
        yield app


def request(method: str, path: str, *headers: tuple[bytes, bytes], host: bytes = b"proxy.test") -> Message:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
            "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5000), "headers": [(b"host", host), *headers],
            "state": {}}


def posting(key: str | None, *headers: tuple[bytes, bytes], host: bytes = b"proxy.test") -> Message:
    auth = [(b"authorization", b"Bearer " + key.encode())] if key else []
    return request("POST", "/v1/chat/completions", (b"content-type", b"application/json"),
                   (b"content-length", str(len(CHAT)).encode()), *auth, *headers, host=host)


async def call(app: Any, scope: Message, body: list[bytes], *, unread: int = 0) -> list[Message]:
    """Every message the app sends; the body in `body`'s parts, then `unread` more parts the client is still
    sending when the app answers (none: the client waits for the answer)."""
    sent: list[Message] = []
    parts = [*body, *[b"x" * 16] * unread]
    done = asyncio.Event()

    async def receive() -> Message:
        if parts:
            return {"type": "http.request", "body": parts.pop(0), "more_body": bool(parts)}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            done.set()

    await asyncio.wait_for(app(scope, receive, send), 10)
    return sent


def names(message: Message) -> list[bytes]:
    return [name for name, _ in message["headers"]]


def requests_counted(app: Any) -> float:
    text = app.state.metrics.render().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("cfai_requests_total"))


async def test_an_answer_passes_every_piece_in_order(settings: Settings) -> None:
    """The key's x-ratelimit-* headers (innermost), then Observe's x-cfai-*, then the security headers the route
    did not set, then CORS's (outermost but the body guard)."""
    key, _ = KeyStore(settings.database).create("limited", KeyPolicy(rpm=100))
    async with serving(replace(settings, cors_origins="http://localhost:5173")) as app:
        start, body = await call(app, posting(key, (b"origin", b"http://localhost:5173")), [CHAT])
    assert start["status"] == 200 and not body.get("more_body", False)
    assert names(start)[4:] == [
        b"x-ratelimit-limit-requests", b"x-ratelimit-remaining-requests", b"x-ratelimit-reset-requests",
        b"x-cfai-overhead-ms", b"x-cfai-upstream", b"x-cfai-model", b"x-cfai-neurons", b"x-cfai-neurons-source",
        b"referrer-policy", b"x-frame-options", b"content-security-policy",
        b"access-control-expose-headers", b"access-control-allow-origin", b"vary"]  # no connection: body read


async def test_an_early_answer_on_an_unread_body_closes_the_connection_after_the_drain(settings: Settings) -> None:
    async with serving(settings) as app:
        before = requests_counted(app)
        sent = await call(app, posting(None), [CHAT[:10]], unread=3)
        counted = requests_counted(app) - before
    start, answer, end = sent
    assert start["status"] == 401 and names(start)[-1] == b"connection"
    assert set(SECURITY) <= set(names(start)) and b"x-cfai-overhead-ms" in names(start)
    assert answer["more_body"] is True and b"missing_api_key" in answer["body"]  # held while the rest is read
    assert end == {"type": "http.response.body", "body": b"", "more_body": False}
    assert counted == 1  # observed: Observe is outside KeyAuth


async def test_a_cors_preflight_passes_only_the_body_guard(settings: Settings) -> None:
    async with serving(replace(settings, cors_origins="http://localhost:5173")) as app:
        before = requests_counted(app)
        start, _ = await call(app, request("OPTIONS", "/v1/chat/completions", (b"origin", b"http://localhost:5173"),
                                           (b"access-control-request-method", b"POST")), [])
        assert requests_counted(app) == before  # answered before Observe
    assert start["status"] == 200 and b"access-control-allow-origin" in names(start)
    assert not set(SECURITY) & set(names(start))  # CORS is outside the security headers


async def test_a_loopback_refusal_is_secured_but_not_observed(settings: Settings) -> None:
    async with serving(settings, no_auth=True) as app:
        before = requests_counted(app)
        start, _ = await call(app, request("GET", "/v1/models"), [])  # Host: proxy.test
        refused = requests_counted(app) - before
        allowed, _ = await call(app, request("GET", "/v1/models", host=b"127.0.0.1:8000"), [])
        rows = len(app.state.recorder._rows)
    assert start["status"] == 403 and set(SECURITY) <= set(names(start))
    assert b"x-cfai-overhead-ms" not in names(start) and refused == 0
    assert allowed["status"] == 200 and b"x-cfai-overhead-ms" in names(allowed) and rows == 1


async def test_a_refused_websocket_is_closed_unanswered(settings: Settings) -> None:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    async with serving(settings, no_auth=True) as app:
        await app({**request("GET", "/ws"), "type": "websocket"}, receive, send)
        assert sent == []
        await app({**request("GET", "/ws", host=b"127.0.0.1"), "type": "websocket"}, receive, send)
    assert [m["type"] for m in sent] == ["websocket.close"]  # let through: no such route


async def test_the_cap_refusal_is_observed_and_closes(settings: Settings) -> None:
    key, _ = KeyStore(settings.database).create("tests")
    async with serving(replace(settings, max_concurrency=0)) as app:
        before = requests_counted(app)
        start, answer, _ = await call(app, posting(key), [CHAT[:10]], unread=1)
        health, _ = await call(app, request("GET", "/health"), [])
        counted = requests_counted(app) - before
    assert start["status"] == 503 and b"x-cfai-overhead-ms" in names(start)
    assert [v for n, v in start["headers"] if n == b"connection"] == [b"close"]  # once: the cap's, then the guard's
    assert b"overloaded" in answer["body"] and health["status"] == 200 and counted == 1
