"""/v1/rerank, /v2/rerank and /rerank through the proxy: raw httpx, the real cohere SDK (v1 and v2 clients),
batching and merging against a fake Workers AI, the emulator end to end, errors and the key scope."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import cohere
import httpx
import pytest

from cfai_cli.core.caps import MAX_RERANK_CALLS_AT_ONCE
from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings
from cfai_cli.store.keys import KeyPolicy, KeyStore
from tests.fake_workers import FakeWorkers, envelope, error_envelope

pytestmark = pytest.mark.anyio

BGE = "@cf/baai/bge-reranker-base"


def number(text: str) -> int:
    return int(text.split("-")[1])


def reranker(*, shape: str = "response", slow_first: float = 0.0, logits: bool = False,
             in_flight: list[int] | None = None) -> Any:
    """A fake bge reranker: doc-N scores (N % 97) / 100 (or a logit), so the right order is known in advance;
    answers in its own order (worst first), with ids as strings when `shape` says so."""
    busy = [0]

    async def handle(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        texts = [c["text"] for c in body["contexts"]]
        assert body["query"] == "which doc" and "top_k" not in body
        busy[0] += 1
        if in_flight is not None:
            in_flight.append(busy[0])
        try:
            await asyncio.sleep(slow_first if texts[0] == "doc-0" else 0.001)
        finally:
            busy[0] -= 1
        scores = [(i, (number(t) % 97) / 100 * (20 if logits else 1) - (5 if logits else 0))
                  for i, t in enumerate(texts)]
        scores.sort(key=lambda pair: pair[1])
        items = [{"id": str(i) if shape == "string-ids" else i, "score": s} for i, s in scores]
        result: Any = {"data": items} if shape == "data" else {"response": items}
        return httpx.Response(200, json=envelope(result))

    return handle


def expected_order(count: int) -> list[int]:
    return sorted(range(count), key=lambda n: (-(n % 97), n))


@pytest.mark.parametrize("shape", ["response", "data", "string-ids"])
async def test_large_requests_split_run_side_by_side_and_merge_in_score_order(proxy, fake: FakeWorkers,
                                                                              shape: str) -> None:
    in_flight: list[int] = []
    fake.models[BGE] = reranker(shape=shape, slow_first=0.05, in_flight=in_flight)
    docs = [f"doc-{i}" for i in range(950)]
    async with proxy() as client:
        response = await client.post("/v1/rerank", json={"model": "rerank-english-v3.0", "query": "which doc",
                                                         "documents": docs, "top_n": 150})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["index"] for r in body["results"]] == expected_order(950)[:150]  # the caller's indices
    assert all(docs[r["index"]] == f"doc-{r['index']}" for r in body["results"])
    assert sorted(len(call[1]["contexts"]) for call in fake.calls) == [50] + [100] * 9
    assert max(in_flight) == MAX_RERANK_CALLS_AT_ONCE  # concurrent, and bounded
    assert body["meta"] == {"api_version": {"version": "1"}, "billed_units": {"search_units": 10}}
    assert body["model"] == BGE and body["usage"]["total_tokens"] > 0 and "document" not in body["results"][0]


async def test_logits_become_scores_in_0_1_without_changing_the_order(proxy, fake: FakeWorkers) -> None:
    fake.models[BGE] = reranker(logits=True)
    async with proxy() as client:
        response = await client.post("/v2/rerank", json={"model": BGE, "query": "which doc",
                                                         "documents": [f"doc-{i}" for i in range(120)]})
    results = response.json()["results"]
    assert [r["index"] for r in results] == expected_order(120)
    assert all(0.0 < r["relevance_score"] < 1.0 for r in results)
    assert results[0]["relevance_score"] > 0.99 and results[-1]["relevance_score"] < 0.01


async def test_upstream_usage_is_reported_when_workers_ai_sends_it(proxy, fake: FakeWorkers) -> None:
    def handle(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        return httpx.Response(200, json=envelope({"response": [{"id": 0, "score": 0.3}],
                                                  "usage": {"prompt_tokens": 17}}))
    fake.models[BGE] = handle
    async with proxy() as client:
        body = (await client.post("/rerank", json={"query": "q", "documents": ["one"]})).json()
    assert body["usage"] == {"total_tokens": 17} and body["results"] == [{"index": 0, "relevance_score": 0.3}]


@pytest.mark.parametrize(("body", "param"), [
    ({"query": "q", "documents": []}, "documents"),
    ({"query": "q", "documents": ["ok", ""]}, "documents[1]"),
    ({"query": "q", "documents": [{"title": "x"}]}, "documents[0].text"),
    ({"query": "q", "documents": ["a"] * 1001}, "documents"),
    ({"query": "", "documents": ["a"]}, "query"),
    ({"documents": ["a"]}, "query"),
    ({"query": "q", "documents": ["a"], "top_n": 0}, "top_n"),
    ({"query": "q", "documents": ["a"], "model": "no-such-reranker"}, "model"),
    ({"query": "q", "documents": ["a"], "model": "text-embedding-3-small"}, "model"),
])
async def test_bad_requests_are_openai_error_bodies_naming_the_parameter(proxy, fake: FakeWorkers,
                                                                         body: dict[str, Any], param: str) -> None:
    async with proxy() as client:
        response = await client.post("/v1/rerank", json=body)
    assert response.status_code in (400, 404), response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]
    assert fake.calls == []


async def test_a_broken_upstream_answer_is_a_502_not_a_traceback(proxy, fake: FakeWorkers) -> None:
    fake.models[BGE] = lambda request, body: httpx.Response(200, json=envelope({"response": [{"id": 9}]}))
    async with proxy() as client:
        response = await client.post("/v1/rerank", json={"query": "q", "documents": ["a", "b"]})
    assert response.status_code == 502 and "rerank id 9" in response.json()["error"]["message"]


async def test_upstream_refusals_keep_cloudflare_s_message(proxy, fake: FakeWorkers) -> None:
    fake.models[BGE] = lambda request, body: httpx.Response(
        400, json=error_envelope(5006, "AiError: Bad input: Error: '/contexts/0/text' must NOT have fewer than 1"))
    async with proxy() as client:
        response = await client.post("/v1/rerank", json={"query": "q", "documents": ["a"]})
    assert response.status_code == 400 and "/contexts/0/text" in response.json()["error"]["message"]


async def test_rerank_needs_the_embeddings_scope(settings: Settings, fake: FakeWorkers) -> None:
    store = KeyStore(settings.database)
    retrieval, _ = store.create("retrieval", KeyPolicy(scopes=frozenset({"embeddings"})))
    chat_only, _ = store.create("chat", KeyPolicy(scopes=frozenset({"chat"})))
    fake.models[BGE] = reranker()
    app = create_app(settings, transport=fake.transport())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test") as client:
        for path in ("/v1/rerank", "/v2/rerank", "/rerank"):
            body = {"query": "which doc", "documents": ["doc-1"]}
            allowed = await client.post(path, json=body, headers={"Authorization": f"Bearer {retrieval}"})
            refused = await client.post(path, json=body, headers={"Authorization": f"Bearer {chat_only}"})
            assert allowed.status_code == 200, (path, allowed.text)
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "insufficient_scope", path


@asynccontextmanager
async def offline_http(settings: Settings, key: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.as_offline())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test",
            headers={"Authorization": f"Bearer {key}"}) as http:
        yield http


DOCS = ["Berlin is the capital of Germany", "Paris is the capital of France",
        "France exports wine", "Bananas are yellow"]


async def test_cohere_v2_sdk_against_the_emulator(settings: Settings, api_key: str) -> None:
    async with offline_http(settings, api_key) as http:
        co = cohere.AsyncClientV2(api_key=api_key, base_url="http://proxy.test", httpx_client=http, max_retries=0)
        answer = await co.rerank(model="rerank-v3.5", query="capital of France", documents=DOCS, top_n=3)
    assert [r.index for r in answer.results] == [1, 0, 2]  # word overlap: 3/3, 2/3 (tie broken by index), 1/3
    assert answer.results[0].relevance_score == 1.0
    assert answer.meta is not None and answer.meta.api_version is not None
    assert answer.meta.api_version.version == "2" and answer.meta.billed_units.search_units == 1  # type: ignore[union-attr]
    assert answer.id and answer.id.startswith("rerank-")


async def test_cohere_v1_sdk_with_documents_returned(settings: Settings, api_key: str) -> None:
    async with offline_http(settings, api_key) as http:
        co = cohere.AsyncClient(api_key=api_key, base_url="http://proxy.test", httpx_client=http, max_retries=0)
        answer = await co.rerank(model="rerank-english-v3.0", query="capital of France",
                                 documents=[DOCS[0], {"text": DOCS[1]}], return_documents=True,
                                 max_chunks_per_doc=4)
    assert [(r.index, r.document.text if r.document else None) for r in answer.results] == [(1, DOCS[1]),
                                                                                              (0, DOCS[0])]
    assert answer.meta is not None and answer.meta.api_version is not None
    assert answer.meta.api_version.version == "1"


async def test_cohere_sdk_reports_cfai_errors_as_its_bad_request(settings: Settings, api_key: str) -> None:
    async with offline_http(settings, api_key) as http:
        co = cohere.AsyncClientV2(api_key=api_key, base_url="http://proxy.test", httpx_client=http, max_retries=0)
        with pytest.raises(cohere.BadRequestError) as caught:
            await co.rerank(model="rerank-v3.5", query="q", documents=[])
    assert caught.value.body["error"]["param"] == "documents"  # type: ignore[index]
