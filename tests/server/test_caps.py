"""Hard caps on fan-out, fetched image bytes and stored chains: a clear 400 naming the parameter, and no
upstream call made for a refused request (the fake upstream counts them)."""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

import httpx
import pytest

from cfai_cli.core import caps
from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings
from cfai_cli.store.responses import ResponseStore
from tests.fake_workers import FakeWorkers, native_text

pytestmark = pytest.mark.anyio

LLAMA = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"


def _fake_llama(fake: FakeWorkers) -> None:
    fake.models[LLAMA] = native_text("ok")


async def _post(proxy: Any, path: str, body: dict[str, Any], **options: object) -> httpx.Response:
    async with proxy(**options) as client:
        return await client.post(path, json=body)


def _error(response: httpx.Response, status: int, param: str, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")


@pytest.mark.parametrize(("prompts", "n", "stream", "param", "code"), [
    (caps.MAX_PROMPTS + 1, 1, False, "prompt", "too_many_prompts"),
    (caps.MAX_GENERATIONS // 4 + 1, 4, False, "n", "too_many_generations"),
    (caps.MAX_STREAMS + 1, 1, True, "prompt", "too_many_streams"),
    (caps.MAX_STREAMS // 2 + 1, 2, True, "n", "too_many_streams"),
])
async def test_completions_fan_out_is_capped(proxy: Any, fake: FakeWorkers, prompts: int, n: int, stream: bool,
                                             param: str, code: str) -> None:
    _fake_llama(fake)
    body = {"model": LLAMA, "prompt": [f"p{i}" for i in range(prompts)], "n": n, "stream": stream}
    _error(await _post(proxy, "/v1/completions", body), 400, param, code)
    assert fake.calls == []  # refused before any upstream call


async def test_completions_at_the_caps_still_work(proxy: Any, fake: FakeWorkers) -> None:
    _fake_llama(fake)
    body = {"model": LLAMA, "prompt": [f"p{i}" for i in range(caps.MAX_STREAMS)], "stream": True}
    response = await _post(proxy, "/v1/completions", body)
    assert response.status_code == 200 and response.text.rstrip().endswith("data: [DONE]")
    assert len(fake.calls) == caps.MAX_STREAMS


async def test_embedding_inputs_are_capped_at_openais_limit(proxy: Any, fake: FakeWorkers) -> None:
    body = {"model": "text-embedding-3-small", "input": ["x"] * (caps.MAX_EMBEDDING_INPUTS + 1)}
    _error(await _post(proxy, "/v1/embeddings", body), 400, "input", "too_many_inputs")
    assert fake.calls == []


PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()


async def test_image_parts_are_capped(proxy: Any, fake: FakeWorkers) -> None:
    part = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    body = {"model": "@cf/meta/llama-4-scout-17b-16e-instruct",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "look"}, *[part] * 9]},
                         {"role": "user", "content": [part] * (caps.MAX_IMAGE_PARTS - 8)}]}
    _error(await _post(proxy, "/v1/chat/completions", body), 400, "messages", "too_many_images")
    assert fake.calls == []


async def test_fetched_image_bytes_are_capped_per_request(settings: Settings, fake: FakeWorkers,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Each image is under the per-image limit, but together they pass the request's allowance."""
    monkeypatch.setattr(caps, "MAX_FETCHED_IMAGE_BYTES", 3 * 1024 * 1024)
    served: list[str] = []

    def images(request: httpx.Request) -> httpx.Response:
        served.append(str(request.url))
        return httpx.Response(200, content=b"\x89PNG" + b"\0" * (1024 * 1024), headers={"content-type": "image/png"})

    parts = [{"type": "image_url", "image_url": {"url": f"http://images.test/{i}.png"}} for i in range(4)]
    body = {"model": "@cf/meta/llama-4-scout-17b-16e-instruct", "messages": [{"role": "user", "content": parts}]}
    # The fake image host has no public address, so private fetching is allowed for this app.
    app = create_app(replace(settings, allow_private_fetch=True), transport=fake.transport(),
                     image_transport=httpx.MockTransport(images), no_auth=True)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "images_too_large" and error["param"].startswith("messages[0].content[")
    assert fake.calls == []


async def _chain(client: httpx.AsyncClient, turns: int, *, text: str = "x") -> list[str]:
    """Make a conversation of `turns` stored responses through the API; their ids in order."""
    ids: list[str] = []
    for _ in range(turns):
        body: dict[str, Any] = {"model": LLAMA, "input": text}
        if ids:
            body["previous_response_id"] = ids[-1]
        response = await client.post("/v1/responses", json=body)
        assert response.status_code == 200, response.text
        ids.append(response.json()["id"])
    return ids


async def test_long_stored_chains_are_refused_not_loaded(proxy: Any, fake: FakeWorkers,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_llama(fake)
    monkeypatch.setattr(caps, "MAX_CHAIN_TURNS", 5)
    async with proxy() as client:
        ids = await _chain(client, 5)
        fake.calls.clear()
        body = {"model": LLAMA, "input": "and then?", "previous_response_id": ids[-1]}
        ok = await client.post("/v1/responses", json=body)  # 5 stored turns: at the cap
        assert ok.status_code == 200, ok.text
        assert len(fake.calls[0][1]["messages"]) == 5 * 2 + 1
        fake.calls.clear()
        _error(await client.post("/v1/responses", json={**body, "previous_response_id": ok.json()["id"]}),
               400, "previous_response_id", "conversation_too_long")
    assert fake.calls == []


async def test_stored_chain_bytes_are_capped(proxy: Any, fake: FakeWorkers, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_llama(fake)
    monkeypatch.setattr(caps, "MAX_CHAIN_BYTES", 10_000)  # one stored turn is ~7 kB here
    async with proxy() as client:
        ids = await _chain(client, 2, text="y" * 6000)
        body = {"model": LLAMA, "input": "more", "previous_response_id": ids[-1]}
        _error(await client.post("/v1/responses", json=body), 400, "previous_response_id", "conversation_too_long")


def test_a_loop_in_the_stored_chain_ends() -> None:
    """A chain that points back at itself (written by hand into the database) is replayed once."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        store = ResponseStore(Path(tmp) / "cfai.db")
        for rid, prev in (("resp_a", "resp_b"), ("resp_b", "resp_a")):
            store.save({"id": rid, "created_at": 1, "previous_response_id": prev, "output": []},
                       [{"role": "user", "content": rid}])
        items = store.conversation("resp_a")
        assert items is not None and [i["content"] for i in items] == ["resp_a", "resp_b"][::-1]


async def test_a_streamed_request_holds_at_most_half_the_upstream_pool(settings: Settings, fake: FakeWorkers) -> None:
    _fake_llama(fake)
    app = create_app(replace(settings, max_connections=8), transport=fake.transport(), no_auth=True)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        chat = {"model": LLAMA, "messages": [{"role": "user", "content": "hi"}], "stream": True}
        refused = await client.post("/v1/chat/completions", json={**chat, "n": 5})
        completions = await client.post("/v1/completions", json={"model": LLAMA, "prompt": ["a", "b", "c"], "n": 2,
                                                                 "stream": True})
        allowed = await client.post("/v1/chat/completions", json={**chat, "n": 4})
    _error(refused, 400, "n", "too_many_streams")
    _error(completions, 400, "n", "too_many_streams")
    assert allowed.status_code == 200 and allowed.text.rstrip().endswith("data: [DONE]")
    assert len(fake.calls) == 4
