"""The proxy's routes, one module per endpoint family (OpenAI's, Anthropic's Messages); `routes()` lists them."""

from __future__ import annotations

from starlette.routing import Route

from cfai_cli.server.routes import admin as admin_routes
from cfai_cli.server.routes import audio as audio_routes
from cfai_cli.server.routes import batches as batches_routes
from cfai_cli.server.routes import chat, health, models
from cfai_cli.server.routes import completions as completions_routes
from cfai_cli.server.routes import embeddings as embeddings_routes
from cfai_cli.server.routes import files as files_routes
from cfai_cli.server.routes import images as images_routes
from cfai_cli.server.routes import messages as messages_routes
from cfai_cli.server.routes import moderations as moderations_routes
from cfai_cli.server.routes import openapi as openapi_routes
from cfai_cli.server.routes import rerank as rerank_routes
from cfai_cli.server.routes import responses as responses_routes
from cfai_cli.server.routes import tokenize as tokenize_routes


def routes() -> list[Route]:
    """Every route twice: under /v1 (what SDKs call) and unversioned (what some tools call); Cohere's
    /v2/rerank once, as it is."""
    table = [*chat.ROUTES, *models.ROUTES]
    table += embeddings_routes.ROUTES
    table += images_routes.ROUTES
    table += responses_routes.ROUTES
    table += messages_routes.ROUTES
    table += completions_routes.ROUTES
    table += audio_routes.ROUTES
    table += tokenize_routes.ROUTES
    table += moderations_routes.ROUTES
    table += openapi_routes.ROUTES
    table += rerank_routes.ROUTES
    table += admin_routes.ROUTES
    table += files_routes.ROUTES
    table += batches_routes.ROUTES
    out = [Route("/health", health.health, methods=["GET"])]
    for path, endpoint, methods in table:
        out.append(Route("/v1" + path, endpoint, methods=methods))
        out.append(Route(path, endpoint, methods=methods))
    out += [Route(path, endpoint, methods=methods) for path, endpoint, methods in rerank_routes.V2_ROUTES]
    return out
