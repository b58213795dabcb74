"""POST /v1/tokenize through the proxy: counts, aliases, errors, auth and scopes, and no upstream call ever."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import pytest

from cfai_cli.core.tokens import TOKENS_PER_CONVERSATION, TOKENS_PER_MESSAGE, estimate_tokens
from cfai_cli.server.app import create_app
from cfai_cli.service.tokens import bundled_tokenizer
from cfai_cli.settings import Settings
from cfai_cli.store.keys import KeyPolicy, KeyStore
from tests.fake_workers import FakeWorkers
from tests.openai_schema import validate

pytestmark = pytest.mark.anyio

QWEN = "@cf/qwen/qwen3-30b-a3b-fp8"  # no offline tokenizer: always an estimate


async def test_texts_are_counted_one_by_one(proxy: Any, fake: FakeWorkers) -> None:
    async with proxy() as client:
        response = await client.post("/v1/tokenize", json={"model": QWEN, "input": ["Hello world", "Hello, world!"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {"object": "tokenize", "model": QWEN, "total_tokens": 6, "counts": [2, 4],
                    "method": "estimate", "tokenizer": None, "note": body["note"]}
    assert body["note"].startswith("Estimated")
    assert fake.calls == []  # counted locally: Workers AI is never asked


async def test_a_single_string_and_the_unversioned_path(proxy: Any) -> None:
    async with proxy() as client:
        response = await client.post("/tokenize", json={"model": QWEN, "input": "人工智能"})
    assert response.json()["counts"] == [estimate_tokens("人工智能")] == [4]


async def test_messages_count_the_template(proxy: Any) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello world"}]
    async with proxy() as client:
        body = (await client.post("/v1/tokenize", json={"model": QWEN, "messages": messages})).json()
    assert body["counts"] == [TOKENS_PER_MESSAGE + 3, TOKENS_PER_MESSAGE + 2]
    assert body["total_tokens"] == sum(body["counts"]) + TOKENS_PER_CONVERSATION
    assert "chat template" in body["note"]


async def test_aliases_resolve_like_chat(proxy: Any, settings: Settings, api_key: str, fake: FakeWorkers) -> None:
    async with proxy() as client:
        body = (await client.post("/v1/tokenize", json={"model": "gpt-4o-mini", "input": "Hello world"})).json()
    assert body["model"] == "@cf/meta/llama-3.1-8b-instruct-fast"
    # Exact only where the optional llama-models package is installed; the label must say which.
    expected = "estimate" if bundled_tokenizer(body["model"]) is None else "exact"
    assert body["method"] == expected and body["total_tokens"] == 2
    if expected == "estimate":
        assert "llama-models" in body["note"] and body["tokenizer"] is None

    # A configured alias, as in config.toml's [aliases].
    custom = dataclasses.replace(settings, aliases={**settings.aliases, "house": QWEN})
    app = create_app(custom, transport=fake.transport())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test",
            headers={"Authorization": f"Bearer {api_key}"}) as client:
        response = await client.post("/v1/tokenize", json={"model": "house", "input": "x"})
    assert response.json()["model"] == QWEN


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"model": QWEN}, 400, "input"),
    ({"model": QWEN, "input": "x", "messages": [{"role": "user", "content": "x"}]}, 400, "messages"),
    ({"model": QWEN, "input": []}, 400, "input"),
    ({"model": QWEN, "input": 42}, 400, "input"),
    ({"model": QWEN, "messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role"),
    ({"input": "x"}, 400, "model"),
    ({"model": "", "input": "x"}, 400, "model"),
    ({"model": "@cf/../etc", "input": "x"}, 400, "model"),
    ({"model": "no-such-model", "input": "x"}, 404, "model"),
])
async def test_bad_bodies_get_openai_errors(proxy: Any, body: dict[str, Any], status: int, param: str) -> None:
    async with proxy() as client:
        response = await client.post("/v1/tokenize", json=body)
    assert response.status_code == status, response.text
    validate(response.json(), "ErrorResponse")
    assert response.json()["error"]["param"] == param


async def test_the_unknown_model_error_is_the_chat_routes(proxy: Any) -> None:
    async with proxy() as client:
        tokenize = await client.post("/v1/tokenize", json={"model": "gtp-4o-mini", "input": "x"})
        chat = await client.post("/v1/chat/completions", json={
            "model": "gtp-4o-mini", "messages": [{"role": "user", "content": "x"}]})
    assert tokenize.status_code == chat.status_code == 404
    assert tokenize.json() == chat.json()


async def test_broken_json_is_a_400(proxy: Any) -> None:
    async with proxy() as client:
        response = await client.post("/v1/tokenize", content=b"{", headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"


async def test_a_key_is_needed_and_its_scope_is_chat(proxy: Any, settings: Settings) -> None:
    async with proxy(key=None) as client:
        missing = await client.post("/v1/tokenize", json={"model": QWEN, "input": "x"})
    assert missing.status_code == 401
    store = KeyStore(settings.database)
    embeddings_only, _ = store.create("emb", KeyPolicy(scopes=frozenset({"embeddings"})))
    chat_only, _ = store.create("chat", KeyPolicy(scopes=frozenset({"chat"})))
    qwen_only, _ = store.create("qwen", KeyPolicy(models=(QWEN,)))
    async with proxy(key=embeddings_only) as client:
        refused = await client.post("/v1/tokenize", json={"model": QWEN, "input": "x"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "insufficient_scope"
    async with proxy(key=chat_only) as client:
        assert (await client.post("/v1/tokenize", json={"model": QWEN, "input": "x"})).status_code == 200
    async with proxy(key=qwen_only) as client:
        assert (await client.post("/v1/tokenize", json={"model": QWEN, "input": "x"})).status_code == 200
        other = await client.post("/v1/tokenize", json={"model": "gpt-4o", "input": "x"})
    assert other.status_code == 403 and other.json()["error"]["code"] == "model_not_allowed"


async def test_the_openapi_document_describes_it(proxy: Any) -> None:
    async with proxy() as client:
        document = (await client.get("/openapi.json")).json()
    operation = document["paths"]["/v1/tokenize"]["post"]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert {"model", "input", "messages"} <= set(schema["properties"]) and schema["required"] == ["model"]
