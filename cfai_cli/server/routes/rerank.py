"""POST /v1/rerank, /v2/rerank and /rerank: Cohere's and Jina's rerank shape, answered from a Workers AI reranker.

Imports starlette, service, core. One service for every path; only `meta.api_version` tells them apart.
Errors are cfai's usual OpenAI error body (docs/rerank.md), which Cohere's SDK reports as ApiError too.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from cfai_cli.core.caps import check_rerank_documents
from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.rerank import RerankRequest
from cfai_cli.server.responses import API_HEADERS, JSONResponse
from cfai_cli.server.routes.common import read_json, request_context
from cfai_cli.service.rerank import rerank


async def _answer(request: Request, api_version: str) -> Response:
    req = validate_request(RerankRequest, await read_json(request))
    check_rerank_documents(len(req.documents))  # the proxy's cap; `cfai rerank` may send more
    answer = await rerank(request_context(request), req, api_version=api_version)
    return JSONResponse(answer, headers=API_HEADERS)


async def rerank_v1(request: Request) -> Response:
    return await _answer(request, "1")


async def rerank_v2(request: Request) -> Response:
    return await _answer(request, "2")


ROUTES = [("/rerank", rerank_v1, ["POST"])]  # /v1/rerank (Cohere v1, Jina) and /rerank (LiteLLM)
V2_ROUTES = [("/v2/rerank", rerank_v2, ["POST"])]  # Cohere v2: its own prefix, served as is
