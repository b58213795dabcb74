"""POST /v1/tokenize: token counts for a model, worked out locally (exact or a labelled estimate).

Imports starlette, service, core. Not an OpenAI endpoint: the answer is cfai's own `tokenize` object.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.tokens import TokenizeRequest
from cfai_cli.server.responses import API_HEADERS, JSONResponse
from cfai_cli.server.routes.common import read_json, request_context
from cfai_cli.service.tokens import count_tokens


async def tokenize(request: Request) -> Response:
    req = validate_request(TokenizeRequest, await read_json(request))
    return JSONResponse(await count_tokens(request_context(request), req), headers=API_HEADERS)


ROUTES = [("/tokenize", tokenize, ["POST"])]
