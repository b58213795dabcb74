"""A fan-out request refused for its model charges nothing: its key's rate window is untouched, whatever the
route (moderations with many inputs, rerank, embeddings, images, legacy completions with many prompts)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings
from cfai_cli.store.keys import KeyPolicy, KeyStore

pytestmark = pytest.mark.anyio

# Each would take 4 or more upstream calls, over the key's 3 a minute if they were charged.
REFUSED: list[tuple[str, dict[str, Any]]] = [
    ("/v1/moderations", {"model": "omni-moderation-latest", "input": [f"text {i}" for i in range(10)]}),
    ("/v1/rerank", {"model": "rerank-v3.5", "query": "q", "documents": [f"d{i}" for i in range(450)]}),
    ("/v1/embeddings", {"model": "@cf/baai/bge-m3", "input": [f"t{i}" for i in range(500)]}),
    ("/v1/images/generations", {"model": "@cf/black-forest-labs/flux-1-schnell", "prompt": "a cat", "n": 4}),
    ("/v1/completions", {"model": "@cf/qwen/qwen3-30b-a3b-fp8", "prompt": [f"p{i}" for i in range(10)]}),
]


@asynccontextmanager
async def proxy(settings: Settings, key: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.as_offline())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1",
            headers={"Authorization": f"Bearer {key}"}) as client:
        yield client


@pytest.mark.parametrize(("path", "body"), REFUSED, ids=[p for p, _ in REFUSED])
async def test_a_request_refused_for_its_model_uses_no_rate_window(settings: Settings, path: str,
                                                                   body: dict[str, Any]) -> None:
    policy = KeyPolicy(models=("@cf/meta/llama-3.1-8b*",), rpm=3)
    key, _ = KeyStore(settings.database).create("llama-only", policy)
    async with proxy(settings, key) as client:
        refused = await client.post(path, json=body)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "model_not_allowed", refused.text
        allowed = await client.post("/v1/chat/completions", json={
            "model": "@cf/meta/llama-3.1-8b-instruct-fast", "messages": [{"role": "user", "content": "hi"}]})
        assert allowed.status_code == 200, allowed.text
