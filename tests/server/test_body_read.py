"""A JSON request's body as the route reads it (server.routes.common.read_body): every part of a body sent in
several messages, and a body with no Content-Length refused with 413 once its parts pass the JSON limit."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings
from tests.fake_workers import FakeWorkers, native_text

pytestmark = pytest.mark.anyio

MODEL = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"


async def post_in_parts(settings: Settings, api_key: str, fake: FakeWorkers, parts: list[bytes]) -> tuple[int, Any]:
    """POST /v1/chat/completions with its body in `parts` (one message each, no Content-Length): status, JSON."""
    app = create_app(settings, transport=fake.transport())
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 5000), "server": ("proxy.test", 80),
             "headers": [(b"host", b"proxy.test"), (b"content-type", b"application/json"),
                         (b"transfer-encoding", b"chunked"), (b"authorization", f"Bearer {api_key}".encode())]}
    messages = [{"type": "http.request", "body": part, "more_body": i < len(parts) - 1} for i, part in enumerate(parts)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
    body = b"".join(m["body"] for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)


async def test_a_body_in_parts_is_read_whole(settings: Settings, api_key: str, fake: FakeWorkers) -> None:
    fake.models[MODEL] = native_text("Hello there.")
    raw = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi " * 50}]}).encode()
    status, answer = await post_in_parts(settings, api_key, fake, [raw[:10], b"", raw[10:70], raw[70:]])
    assert status == 200 and answer["choices"][0]["message"]["content"] == "Hello there."


async def test_a_body_without_a_length_is_refused_past_the_json_limit(settings: Settings, api_key: str,
                                                                      fake: FakeWorkers) -> None:
    fake.models[MODEL] = native_text("Hello there.")
    settings = replace(settings, max_json_mb=1 / 1024)  # 1 KiB
    raw = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "x" * 2000}]}).encode()
    status, answer = await post_in_parts(settings, api_key, fake, [raw[:600], raw[600:1200], raw[1200:]])
    assert status == 413 and "larger than the proxy's limit of 1024 bytes" in answer["error"]["message"]
