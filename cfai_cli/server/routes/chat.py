"""POST /v1/chat/completions: validate, hand to the shared service, answer JSON or SSE.

Imports starlette, service, core.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.chat import ChatCompletionRequest
from cfai_cli.core.translate.chat import request_tools
from cfai_cli.server.responses import API_HEADERS, JSONResponse
from cfai_cli.server.routes.common import chat_context, dropped_tools_headers, read_json, sse_response
from cfai_cli.service.chat import create_chat_completion, open_chat_stream


async def chat_completions(request: Request) -> Response:
    req = validate_request(ChatCompletionRequest, await read_json(request))
    ctx = chat_context(request)
    extra = dropped_tools_headers(request_tools(req).dropped, "chat.completions") if req.tools else {}
    if req.stream:
        return sse_response(await open_chat_stream(ctx, req), headers=extra)
    return JSONResponse(await create_chat_completion(ctx, req), headers={**API_HEADERS, **extra})


ROUTES = [("/chat/completions", chat_completions, ["POST"])]
