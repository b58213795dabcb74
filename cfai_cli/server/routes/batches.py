"""The Batch API: POST /v1/batches, GET /v1/batches, GET /v1/batches/{id}, POST /v1/batches/{id}/cancel.

Imports starlette, service and core. The routes record and read batches (service.batches); the executor
started in the app's lifespan runs them, woken when one is created or cancelled.
"""

from __future__ import annotations

import anyio
from starlette.requests import Request
from starlette.responses import Response

from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.batches import CreateBatchRequest
from cfai_cli.server.responses import API_HEADERS, JSONResponse
from cfai_cli.server.routes.common import read_json
from cfai_cli.server.routes.files import _int
from cfai_cli.server.routes.responses import owner
from cfai_cli.service.batches import cancel_batch, create_batch, get_batch, list_batches


def _wake(request: Request) -> None:
    executor = request.app.state.batches if hasattr(request.app.state, "batches") else None
    if executor is not None:
        executor.wake()
    else:  # not started yet (server.app starts it after the warm-up): start that now
        request.app.state.warm_up.set()


async def create(request: Request) -> Response:
    req = validate_request(CreateBatchRequest, await read_json(request))
    key = request.scope.get("state", {}).get("cfai_key")
    # Store calls in a worker thread (routes.files says why).
    batch = await anyio.to_thread.run_sync(lambda: create_batch(
        request.app.state.ctx, req, owner=owner(request), scopes=key.policy.scopes if key is not None else None))
    _wake(request)
    return JSONResponse(batch, headers=API_HEADERS)


async def retrieve(request: Request) -> Response:
    batch = await anyio.to_thread.run_sync(
        lambda: get_batch(request.app.state.ctx, request.path_params["batch_id"], owner=owner(request)))
    return JSONResponse(batch, headers=API_HEADERS)


async def listing(request: Request) -> Response:
    query = request.query_params
    limit = _int(query.get("limit"), "limit", 20)
    page = await anyio.to_thread.run_sync(
        lambda: list_batches(request.app.state.ctx, owner=owner(request), limit=limit, after=query.get("after")))
    return JSONResponse(page, headers=API_HEADERS)


async def cancel(request: Request) -> Response:
    batch = await anyio.to_thread.run_sync(
        lambda: cancel_batch(request.app.state.ctx, request.path_params["batch_id"], owner=owner(request)))
    _wake(request)
    return JSONResponse(batch, headers=API_HEADERS)


ROUTES = [
    ("/batches", create, ["POST"]),
    ("/batches", listing, ["GET"]),
    ("/batches/{batch_id}", retrieve, ["GET"]),
    ("/batches/{batch_id}/cancel", cancel, ["POST"]),
]
