"""POST /v1/completions (legacy): validate, hand to the shared service, answer JSON or SSE.

Imports starlette, service, core. Streams are chat-style: bare `data:` chunks ending in `[DONE]`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.completions import CompletionRequest
from cfai_cli.server.responses import API_HEADERS, JSONResponse
from cfai_cli.server.routes.common import chat_context, read_json, sse_response
from cfai_cli.service.completions import create_completion, open_completion_stream


async def completions(request: Request) -> Response:
    req = validate_request(CompletionRequest, await read_json(request))
    ctx = chat_context(request)
    if req.stream:
        return sse_response(await open_completion_stream(ctx, req))
    return JSONResponse(await create_completion(ctx, req), headers=API_HEADERS)


ROUTES = [("/completions", completions, ["POST"])]
