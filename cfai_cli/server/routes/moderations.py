"""POST /v1/moderations: validate, classify with the guard model through the shared service, answer OpenAI's object.

Imports starlette, service, core. The route needs the `chat` scope (server/auth.py): it runs a text-generation
model, and moderation is what a chat application does before or after its chat calls.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.moderations import ModerationRequest
from cfai_cli.server.responses import API_HEADERS, JSONResponse
from cfai_cli.server.routes.common import read_json, request_context
from cfai_cli.service.moderations import create_moderation


async def moderations(request: Request) -> Response:
    req = validate_request(ModerationRequest, await read_json(request))
    return JSONResponse(await create_moderation(request_context(request), req), headers=API_HEADERS)


ROUTES = [("/moderations", moderations, ["POST"])]
