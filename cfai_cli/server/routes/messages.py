"""The Anthropic Messages API: POST /v1/messages (JSON or Anthropic's named-event SSE) and
POST /v1/messages/count_tokens.

Imports starlette, service, core. Errors on these paths leave as Anthropic error bodies (server.errors picks
the dialect by path); a stream that fails once started ends with an `error` event and no `message_stop`.
Query strings (`?beta=true`, what the SDKs' beta clients add) and `anthropic-version`/`anthropic-beta`
headers are accepted whatever their value.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from cfai_cli.core.anthropic.models import CountTokensRequest, MessagesRequest
from cfai_cli.core.openai.base import validate_request
from cfai_cli.server.responses import API_HEADERS, JSONResponse
from cfai_cli.server.routes.common import chat_context, dropped_tools_headers, read_json, request_context, sse_response
from cfai_cli.service.messages import count_message_tokens, create_message, open_message_stream, prepare_message


async def create(request: Request) -> Response:
    body = await read_json(request)
    req = validate_request(MessagesRequest, body)
    ctx = chat_context(request)
    prepared = await prepare_message(ctx, req, body, stream=bool(req.stream))
    extra = dropped_tools_headers(prepared.dropped_tools, "messages")
    if req.stream:
        events = await open_message_stream(ctx, prepared)
        return sse_response(events, done=False, named=True, on_error=events.fail, headers=extra)
    return JSONResponse(await create_message(ctx, prepared), headers={**API_HEADERS, **extra})


async def count_tokens(request: Request) -> Response:
    req = validate_request(CountTokensRequest, await read_json(request))
    return JSONResponse(await count_message_tokens(request_context(request), req), headers=API_HEADERS)


ROUTES = [
    ("/messages", create, ["POST"]),
    ("/messages/count_tokens", count_tokens, ["POST"]),
]
