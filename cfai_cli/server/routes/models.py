"""GET /v1/models, GET /v1/models/{id} and the open GET /health.

Imports starlette, service.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from cfai_cli import __version__
from cfai_cli.server.errors import API_HEADERS
from cfai_cli.service.models import list_openai_models, retrieve_openai_model


async def list_models(request: Request) -> Response:
    return JSONResponse(await list_openai_models(request.app.state.ctx), headers=API_HEADERS)


async def retrieve_model(request: Request) -> Response:
    name = request.path_params["model"]
    return JSONResponse(await retrieve_openai_model(request.app.state.ctx, name), headers=API_HEADERS)


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok", "version": __version__, "offline": request.app.state.offline},
                        headers=API_HEADERS)


ROUTES = [
    ("/models", list_models, ["GET"]),
    ("/models/{model:path}", retrieve_model, ["GET"]),
]
