"""GET /v1/models, GET /v1/models/{id} and GET /v1/route-check (GET /health is in routes.health).

Imports starlette, service. The model routes answer in Anthropic's shape when the request carries an
`anthropic-version` header (every Anthropic SDK sends one), in OpenAI's otherwise.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from cfai_cli.errors import InvalidRequest
from cfai_cli.server.responses import API_HEADERS, JSONResponse
from cfai_cli.server.routes.common import request_context
from cfai_cli.service.models import (
    list_anthropic_models,
    list_openai_models,
    retrieve_anthropic_model,
    retrieve_openai_model,
)


def _anthropic(request: Request) -> bool:
    return "anthropic-version" in request.headers


def _limit(raw: str | None) -> int:
    if raw is None:
        return 20
    if not raw.isdigit():
        raise InvalidRequest("Invalid value for 'limit': expected an integer from 1 to 1000.", param="limit",
                             code="invalid_value")
    return int(raw)


async def list_models(request: Request) -> Response:
    ctx = request_context(request)
    if _anthropic(request):
        query = request.query_params
        page = await list_anthropic_models(ctx, limit=_limit(query.get("limit")), after_id=query.get("after_id"),
                                           before_id=query.get("before_id"))
        return JSONResponse(page, headers=API_HEADERS)
    return JSONResponse(await list_openai_models(ctx), headers=API_HEADERS)


async def retrieve_model(request: Request) -> Response:
    name = request.path_params["model"]
    retrieve = retrieve_anthropic_model if _anthropic(request) else retrieve_openai_model
    return JSONResponse(await retrieve(request_context(request), name), headers=API_HEADERS)


async def route_check(request: Request) -> Response:
    """The chain of targets a model name resolves to, each with its keys' state (a key with `models` scope;
    each key's rests, counters and last error only for an `admin` key); `vision=true`: the chain a request
    with images gets (vision aliases applied)."""
    name = request.query_params.get("model", "")
    if not name.strip():
        raise InvalidRequest("Pass the model name to check: /v1/route-check?model=NAME.", param="model",
                             code="missing_required_parameter")
    vision = request.query_params.get("vision", "").lower() in ("1", "true", "yes")
    key = request.scope.get("state", {}).get("cfai_key")
    # Rests, counters and upstream error texts are the operator's (as on /health?detail=1): admin keys only.
    detail = not request.app.state.keys_required or (key is not None and "admin" in key.policy.scopes)
    router = request.app.state.ctx.router
    await router.refresh_view()  # the rests every replica learned ([coordination] url)
    return JSONResponse(router.describe(name, vision=vision, detail=detail), headers=API_HEADERS)


ROUTES = [
    ("/models", list_models, ["GET"]),
    ("/models/{model:path}", retrieve_model, ["GET"]),
    ("/route-check", route_check, ["GET"]),
]
