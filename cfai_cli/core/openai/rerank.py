"""Rerank wire models: the request rerank clients send (Cohere v1/v2, Jina, LiteLLM) and the answer we emit.

Pure: pydantic and the standard library. One request shape serves /v1/rerank, /v2/rerank and /rerank:
Cohere's and Jina's fields overlap, and the ones cfai cannot honour (max_chunks_per_doc, rank_fields,
max_tokens_per_doc) are accepted and ignored, as unknown fields are everywhere (docs/rerank.md).
"""

from __future__ import annotations

from typing import Annotated, NotRequired, TypedDict

from pydantic import Field

from cfai_cli.core.catalog import DEFAULT_RERANK_MODEL
from cfai_cli.core.openai.base import WireModel


class RerankDocument(WireModel):
    """A document given as an object (Cohere v1, Jina): only `text` is read."""

    text: str | None = None


class RerankRequest(WireModel):
    model: str = DEFAULT_RERANK_MODEL
    query: str
    documents: list[str | RerankDocument]
    top_n: Annotated[int, Field(ge=1)] | None = None
    return_documents: bool | None = None


class RerankedDocument(TypedDict):
    text: str


class RerankResult(TypedDict):
    index: int
    relevance_score: float
    document: NotRequired[RerankedDocument]


class ApiVersion(TypedDict):
    version: str


class BilledUnits(TypedDict):
    search_units: int


class RerankMeta(TypedDict):
    api_version: ApiVersion
    billed_units: BilledUnits


class RerankUsage(TypedDict):
    total_tokens: int


class RerankResponse(TypedDict):
    id: str
    model: str
    results: list[RerankResult]
    meta: RerankMeta
    usage: RerankUsage
