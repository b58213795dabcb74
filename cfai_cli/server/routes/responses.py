"""The Responses API routes: POST /v1/responses (JSON or named-event SSE) and the stored-response routes.

Imports starlette, service, core. Streams end after their terminal event with no `[DONE]`; a failure
mid-stream becomes an `error` event and `response.failed`, never a chat-style error body.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.responses import CreateResponseRequest
from cfai_cli.core.translate.responses import response_tools
from cfai_cli.errors import InvalidRequest
from cfai_cli.server.responses import API_HEADERS, JSONResponse
from cfai_cli.server.routes.common import chat_context, dropped_tools_headers, read_json, sse_response
from cfai_cli.service.responses import (
    create_response,
    delete_response,
    get_response,
    list_input_items,
    open_response_stream,
)


def owner(request: Request) -> str | None:
    """The id of the API key making the request: stored responses are private to it."""
    key = request.scope.get("state", {}).get("cfai_key")
    return key.id if key is not None else None


async def create(request: Request) -> Response:
    req = validate_request(CreateResponseRequest, await read_json(request))
    ctx = chat_context(request)
    extra = dropped_tools_headers(response_tools(req).dropped, "responses")
    if req.stream:
        stream = await open_response_stream(ctx, req, owner=owner(request))
        return sse_response(stream, done=False, named=True, on_error=stream.fail, headers=extra)
    return JSONResponse(await create_response(ctx, req, owner=owner(request)), headers={**API_HEADERS, **extra})


async def retrieve(request: Request) -> Response:
    if request.query_params.get("stream") in ("true", "1"):
        raise InvalidRequest("Replaying a stored response as a stream is not supported.", param="stream",
                             code="unsupported_value")
    found = get_response(request.app.state.ctx, request.path_params["response_id"], owner=owner(request))
    return JSONResponse(found, headers=API_HEADERS)


async def delete(request: Request) -> Response:
    return JSONResponse(delete_response(request.app.state.ctx, request.path_params["response_id"],
                                        owner=owner(request)), headers=API_HEADERS)


def _limit(raw: str | None) -> int:
    if raw is None:
        return 20
    if not raw.isdigit():
        raise InvalidRequest("Invalid value for 'limit': expected an integer from 1 to 100.", param="limit",
                             code="invalid_value")
    return int(raw)


async def input_items(request: Request) -> Response:
    query = request.query_params
    page = list_input_items(request.app.state.ctx, request.path_params["response_id"],
                            limit=_limit(query.get("limit")), order=query.get("order", "desc"),
                            after=query.get("after"), owner=owner(request))
    return JSONResponse(page, headers=API_HEADERS)


ROUTES = [
    ("/responses", create, ["POST"]),
    ("/responses/{response_id}", retrieve, ["GET"]),
    ("/responses/{response_id}", delete, ["DELETE"]),
    ("/responses/{response_id}/input_items", input_items, ["GET"]),
]
