"""Pure rerank translation: request checks, batches, score parsing (every shape), normalising, merging."""

from __future__ import annotations

import math
from typing import Any

import pytest

from cfai_cli.core.caps import MAX_RERANK_DOCUMENTS, check_rerank_documents
from cfai_cli.core.catalog import DEFAULT_ALIASES, resolve_model
from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.rerank import RerankRequest
from cfai_cli.core.translate.rerank import (
    MAX_TEXT_CHARS,
    RerankModel,
    batches,
    check_request,
    from_workers_rerank,
    merge,
    normalise,
    parse_scores,
    rerank_model,
    to_workers_rerank,
)
from cfai_cli.errors import InvalidRequest, UpstreamError

BGE = "@cf/baai/bge-reranker-base"


def request(**body: Any) -> RerankRequest:
    return validate_request(RerankRequest, {"query": "q", "documents": ["a"], **body})


@pytest.mark.parametrize("name", ["rerank-english-v3.0", "rerank-multilingual-v3.0", "rerank-v3.5",
                                  "rerank-english-v2.0", "rerank-v5.0-pro", "jina-reranker-v2-base-multilingual",
                                  BGE])
def test_rerank_names_resolve_to_the_bge_reranker(name: str) -> None:
    assert resolve_model(name, DEFAULT_ALIASES) == BGE


def test_model_defaults_to_an_alias_that_config_can_move() -> None:
    req = validate_request(RerankRequest, {"query": "q", "documents": ["a"]})
    assert resolve_model(req.model, {**DEFAULT_ALIASES, "rerank-v3.5": "@cf/acme/reranker"}) == "@cf/acme/reranker"


def test_documents_may_be_strings_or_text_objects_and_extra_fields_are_ignored() -> None:
    req = request(documents=["one", {"text": "two", "title": "t"}], max_chunks_per_doc=10, rank_fields=["text"])
    assert check_request(req) == ["one", "two"]


@pytest.mark.parametrize(("body", "param"), [
    ({"query": "  "}, "query"),
    ({"documents": []}, "documents"),
    ({"documents": ["ok", ""]}, "documents[1]"),
    ({"documents": ["ok", {"text": " "}]}, "documents[1].text"),
    ({"documents": [{"title": "no text"}]}, "documents[0].text"),
    ({"documents": ["x" * (MAX_TEXT_CHARS + 1)]}, "documents[0]"),
    ({"query": "x" * (MAX_TEXT_CHARS + 1)}, "query"),
])
def test_bad_requests_name_the_parameter(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_request(request(**body))
    assert caught.value.param == param and param in caught.value.message


@pytest.mark.parametrize(("body", "param"), [({"top_n": 0}, "top_n"), ({"documents": "a"}, "documents"),
                                             ({"query": 3}, "query"), ({"return_documents": "yes"},
                                                                       "return_documents")])
def test_wrong_types_are_400s_naming_the_parameter(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        request(**body)
    assert caught.value.param == param


def test_document_count_cap() -> None:
    check_rerank_documents(MAX_RERANK_DOCUMENTS)
    with pytest.raises(InvalidRequest) as caught:
        check_rerank_documents(MAX_RERANK_DOCUMENTS + 1)
    assert caught.value.param == "documents" and caught.value.code == "too_many_documents"


def test_batches_cover_every_document_once_in_order() -> None:
    assert batches(250, RerankModel(batch=100)) == [(0, 100), (100, 100), (200, 50)]
    assert batches(3, RerankModel(batch=100)) == [(0, 3)]
    assert batches(4, RerankModel(batch=2)) == [(0, 2), (2, 2)]
    assert rerank_model(BGE).batch == 100 and rerank_model("@cf/other/reranker").batch == 100


def test_embedding_models_are_refused_except_bge_m3_which_ranks_too() -> None:
    with pytest.raises(InvalidRequest) as caught:
        rerank_model("@cf/baai/bge-base-en-v1.5")
    assert caught.value.param == "model" and "not a reranker" in caught.value.message
    assert rerank_model("@cf/baai/bge-m3").batch == 100


def test_workers_body_is_query_and_contexts_without_top_k() -> None:
    assert to_workers_rerank("q", ["a", "b"]) == {"query": "q", "contexts": [{"text": "a"}, {"text": "b"}]}


@pytest.mark.parametrize("result", [
    {"response": [{"id": 1, "score": 0.9}, {"id": 0, "score": 0.1}]},
    {"data": [{"id": 1, "score": 0.9}, {"id": 0, "score": 0.1}]},
    [{"id": "1", "score": 0.9}, {"id": "0", "score": 0.1}],
    {"response": [{"index": 1, "relevance_score": 0.9}, {"id": 0.0, "score": 0.1}]},
])
def test_scores_are_read_from_every_shape(result: Any) -> None:
    assert sorted(parse_scores(result, 2)) == [(0, 0.1), (1, 0.9)]


@pytest.mark.parametrize(("result", "message"), [
    ({"response": [{"id": 0, "score": 0.5}]}, "1 rerank scores for 2"),
    ({"response": [{"id": 2, "score": 0.5}, {"id": 0, "score": 0.5}]}, "rerank id 2"),
    ({"response": [{"id": True, "score": 0.5}, {"id": 0, "score": 0.5}]}, "rerank id True"),
    ({"response": [{"id": 1, "score": "high"}, {"id": 0, "score": 0.5}]}, "score 'high'"),
    ({"response": [{"id": 1, "score": float("nan")}, {"id": 0, "score": 0.5}]}, "score nan"),
    ({"response": ["x", "y"]}, "not an object"),
    ({"shape": [2]}, "no rerank scores"),
])
def test_broken_answers_are_upstream_errors(result: Any, message: str) -> None:
    with pytest.raises(UpstreamError, match=message):
        parse_scores(result, 2)


def test_probabilities_are_kept_and_logits_get_the_sigmoid_all_alike() -> None:
    assert normalise([0.2, 1.0, 0.0]) == [0.2, 1.0, 0.0]
    mapped = normalise([3.0, 0.5, -2.0, -800.0])
    assert mapped == sorted(mapped, reverse=True) and all(0.0 <= s <= 1.0 for s in mapped)
    assert mapped[1] == pytest.approx(1 / (1 + math.exp(-0.5)))  # in [0, 1] but a logit too: mapped as well
    assert mapped[0] == pytest.approx(1 / (1 + math.exp(-3.0)))


def test_merge_orders_by_score_ties_by_index_then_cuts() -> None:
    scored = [(3, 0.5), (0, 0.9), (2, 0.5), (1, 0.1)]
    assert merge(scored, None) == [(0, 0.9), (2, 0.5), (3, 0.5), (1, 0.1)]
    assert merge(scored, 2) == [(0, 0.9), (2, 0.5)]
    assert merge(scored, 10) == merge(scored, None)


def test_answer_shape_with_and_without_documents() -> None:
    texts = ["alpha", "beta"]
    bare = from_workers_rerank(request(documents=texts), texts, [(1, 0.7), (0, 0.2)], id="rerank-1",
                               model_id=BGE, api_version="2", calls=1)
    assert bare == {"id": "rerank-1", "model": BGE,
                    "results": [{"index": 1, "relevance_score": 0.7}, {"index": 0, "relevance_score": 0.2}],
                    "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
                    "usage": {"total_tokens": 5}}  # (q + alpha) + (q + beta), 4 characters a token
    full = from_workers_rerank(request(documents=texts, return_documents=True), texts, [(1, 0.7)], id="r",
                               model_id=BGE, api_version="1", calls=3, tokens=42)
    assert full["results"] == [{"index": 1, "relevance_score": 0.7, "document": {"text": "beta"}}]
    assert full["meta"]["billed_units"] == {"search_units": 3} and full["usage"] == {"total_tokens": 42}
