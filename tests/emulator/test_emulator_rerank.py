"""The emulator's reranker over HTTP: the real schema's checks, word-overlap scores, top_k, the catalogue entry."""

from __future__ import annotations

from typing import Any

import pytest

from tests.emulator.test_emulator import post, search

pytestmark = pytest.mark.anyio

BGE = "@cf/baai/bge-reranker-base"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_scores_are_the_share_of_query_words_found_best_first() -> None:
    response = await post(BGE, {"query": "Capital of France?", "contexts": [
        {"text": "bananas"}, {"text": "the capital of Germany"}, {"text": "Paris is the capital of France"}]})
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["result"] == {"response": [{"id": 2, "score": 1.0}, {"id": 1, "score": 0.666667},
                                           {"id": 0, "score": 0.0}]}


async def test_top_k_keeps_the_best() -> None:
    response = await post(BGE, {"query": "a b", "top_k": 1, "contexts": [{"text": "a"}, {"text": "a b"}]})
    assert response.json()["result"]["response"] == [{"id": 1, "score": 1.0}]


@pytest.mark.parametrize(("body", "message"), [
    ({"contexts": [{"text": "a"}]}, "required properties"),
    ({"query": "", "contexts": [{"text": "a"}]}, "'/query'"),
    ({"query": "q", "contexts": "a"}, "'/contexts' must be array"),
    ({"query": "q", "contexts": [{"text": "a"}, {"text": ""}]}, "'/contexts/1/text'"),
    ({"query": "q", "contexts": [{"text": "a"}], "top_k": 0}, "'/top_k'"),
])
async def test_bad_input_is_5006(body: dict[str, Any], message: str) -> None:
    response = await post(BGE, body)
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["code"] == 5006 and message in error["message"]


async def test_the_catalogue_lists_the_reranker_under_its_real_task() -> None:
    items = (await search(search="reranker")).json()["result"]
    assert [(m["name"], m["task"]["name"], m["id"]) for m in items] == [
        (BGE, "Text Classification", "145337e7-cec3-4ebb-8e78-16ddfc75e580")]
