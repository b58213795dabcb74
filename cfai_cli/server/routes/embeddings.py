"""POST /v1/embeddings: validate, hand to the shared service, answer the OpenAI list object.

Imports starlette, service, core.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from cfai_cli.core.caps import check_embedding_inputs
from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.embeddings import EmbeddingRequest
from cfai_cli.server.responses import API_HEADERS, PiecewiseJSONResponse, vouch_error_free
from cfai_cli.server.routes.common import read_json, request_context
from cfai_cli.service.embeddings import create_embeddings


async def embeddings(request: Request) -> Response:
    req = validate_request(EmbeddingRequest, await read_json(request))
    check_embedding_inputs(len(req.texts()))  # the proxy's cap (OpenAI's); `cfai embed` may send more
    ctx = request_context(request)
    answer = await create_embeddings(ctx, req, as_json=True)
    if ctx.record.cache != "hit":  # then its vectors are floats, checked vector text or base64, none with a quote
        vouch_error_free(request, [answer["model"]])
    return PiecewiseJSONResponse(answer, "data", headers=API_HEADERS)


ROUTES = [("/embeddings", embeddings, ["POST"])]
