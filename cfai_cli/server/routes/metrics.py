"""GET /metrics (and /v1/metrics): the Prometheus text exposition of this process's counters.

Imports starlette. It needs a key with the `admin` scope (see server.auth), unless auth is off.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route


async def metrics(request: Request) -> Response:
    return PlainTextResponse(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4")


def metrics_routes() -> list[Route]:
    return [Route("/metrics", metrics, methods=["GET"]), Route("/v1/metrics", metrics, methods=["GET"])]
