"""Rerank <-> Workers AI rerankers: checks, per-call batches, the `contexts` body, score parsing and merging.

Pure: standard library, cfai_cli.errors and cfai_cli.core. A cross-encoder scores each (query, document)
pair on its own, so scores from separate upstream calls compare directly and merging batches in score
order gives the same ranking one big call would. Indices are always the caller's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cfai_cli.core.openai.rerank import RerankRequest, RerankResponse, RerankResult
from cfai_cli.core.translate.chat_answer import estimate_tokens
from cfai_cli.core.translate.embeddings import EMBEDDING_MODELS
from cfai_cli.errors import InvalidRequest, UpstreamError

# Far beyond the 512 tokens bge-reranker-base reads per pair whatever the tokenizer: refused before it costs a call.
MAX_TEXT_CHARS = 8192 * 8


@dataclass(frozen=True, slots=True)
class RerankModel:
    # Documents per upstream call. Cloudflare documents no limit on `contexts`; 100 is cfai's own choice
    # (a bounded body and latency per call, and Cohere bills a search unit per 100 documents).
    batch: int = 100


RERANK_MODELS: dict[str, RerankModel] = {
    "@cf/baai/bge-reranker-base": RerankModel(),
    "@cf/baai/bge-m3": RerankModel(),  # its documented ranking mode: {query, contexts} -> {response: [{id, score}]}
}


def rerank_model(model_id: str) -> RerankModel:
    """How to call a reranker; a known embedding model without a ranking mode is refused before any call."""
    if model_id in EMBEDDING_MODELS and model_id not in RERANK_MODELS:
        raise InvalidRequest(f"{model_id} is an embedding model, not a reranker: use a rerank model such as "
                             "'rerank-v3.5' or '@cf/baai/bge-reranker-base'.", param="model", code="invalid_model")
    return RERANK_MODELS.get(model_id, RerankModel())


def _check_text(text: str, param: str, what: str) -> None:
    if not text.strip():
        raise InvalidRequest(f"'{param}' is empty: {what} must contain text.", param=param, code="invalid_value")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidRequest(f"'{param}' is too long ({len(text)} characters; at most {MAX_TEXT_CHARS}).",
                             param=param, code="context_length_exceeded")


def check_request(req: RerankRequest) -> list[str]:
    """The documents' texts, in the caller's order, after the checks (each failure names its parameter)."""
    _check_text(req.query, "query", "the query")
    if not req.documents:
        raise InvalidRequest("'documents' must not be an empty list.", param="documents", code="invalid_value")
    texts: list[str] = []
    for i, doc in enumerate(req.documents):
        if isinstance(doc, str):
            text, param = doc, f"documents[{i}]"
        elif doc.text is None:
            raise InvalidRequest(f"Missing 'documents[{i}].text': give each document as a string or as an object "
                                 "with a 'text' field.", param=f"documents[{i}].text",
                                 code="missing_required_parameter")
        else:
            text, param = doc.text, f"documents[{i}].text"
        _check_text(text, param, "every document")
        texts.append(text)
    return texts


def batches(count: int, spec: RerankModel) -> list[tuple[int, int]]:
    """(index of the first document, how many) for each upstream call, in the caller's order."""
    size = max(1, spec.batch)
    return [(start, min(size, count - start)) for start in range(0, count, size)]


def to_workers_rerank(query: str, texts: Sequence[str]) -> dict[str, Any]:
    """No `top_k`: every score comes back, so `top_n` is applied once, after the merge, and the answer does
    not lean on how the upstream orders or cuts its results (undocumented)."""
    return {"query": query, "contexts": [{"text": t} for t in texts]}


def _index(value: Any, size: int) -> int:
    """An id as Workers AI may send it (an int, a float like 3.0, or a string of digits), checked in range."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < size:
        raise UpstreamError(f"Workers AI returned a rerank id {value!r} that is not one of the {size} documents sent.")
    return value


def _score(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UpstreamError(f"Workers AI returned a rerank score {value!r} that is not a number.")
    return float(value)


def parse_scores(result: Any, size: int) -> list[tuple[int, float]]:
    """(index within the batch, score) from `{response: [{id, score}]}`; `{data: [...]}`, a bare list, and
    `index`/`relevance_score` keys are read too (UNCONFIRMED variants). Every document must come back."""
    items = result
    if isinstance(result, Mapping):
        items = next((result[k] for k in ("response", "data", "results") if isinstance(result.get(k), list)), None)
    if not isinstance(items, list):
        raise UpstreamError("Workers AI returned no rerank scores (expected {\"response\": [{\"id\", \"score\"}]}).")
    scored: dict[int, float] = {}
    for item in items:
        if not isinstance(item, Mapping):
            raise UpstreamError("Workers AI returned a rerank item that is not an object.")
        index = _index(item.get("id", item.get("index")), size)
        scored[index] = _score(item.get("score", item.get("relevance_score")))
    if len(scored) < size:
        raise UpstreamError(f"Workers AI returned {len(scored)} rerank scores for {size} documents.")
    return list(scored.items())


def normalise(scores: Sequence[float]) -> list[float]:
    """Scores in [0, 1], as rerank clients expect. bge rerankers output a logit that the model card maps to
    [0, 1] with a sigmoid; whether Workers AI already does is UNCONFIRMED. So: if any score of the request
    lies outside [0, 1] they are logits and all get the sigmoid (one rule for the whole request, so the
    order never changes); otherwise they are kept as they are."""
    if all(0.0 <= s <= 1.0 for s in scores):
        return list(scores)
    return [1.0 / (1.0 + math.exp(-s)) if s >= 0 else math.exp(s) / (1.0 + math.exp(s)) for s in scores]


def merge(scored: Iterable[tuple[int, float]], top_n: int | None) -> list[tuple[int, float]]:
    """Best first; equal scores keep the caller's order; the first `top_n` (all when None)."""
    ranked = sorted(scored, key=lambda pair: (-pair[1], pair[0]))
    return ranked if top_n is None else ranked[:top_n]


def estimated_tokens(query: str, texts: Sequence[str]) -> int:
    """The cross-encoder reads the query once per document."""
    return sum(estimate_tokens(query) + estimate_tokens(t) for t in texts)


def from_workers_rerank(req: RerankRequest, texts: Sequence[str], ranked: Sequence[tuple[int, float]], *,
                        id: str, model_id: str, api_version: str, calls: int,
                        tokens: int | None = None) -> RerankResponse:
    results: list[RerankResult] = []
    for index, score in ranked:
        item: RerankResult = {"index": index, "relevance_score": score}
        if req.return_documents:
            item["document"] = {"text": texts[index]}
        results.append(item)
    total = tokens if tokens is not None else estimated_tokens(req.query, texts)
    return {"id": id, "model": model_id, "results": results,
            "meta": {"api_version": {"version": api_version}, "billed_units": {"search_units": calls}},
            "usage": {"total_tokens": total}}
