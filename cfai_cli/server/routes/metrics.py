"""GET /metrics (and /v1/metrics): the Prometheus text exposition (every worker's, with --workers N).

Imports starlette and server.metrics. It needs a key with the `admin` scope (see server.auth), unless auth is off.
"""

from __future__ import annotations

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cfai_cli.server.metrics import CONTENT_TYPE, Metrics


async def metrics(request: Request) -> Response:
    collected: Metrics = request.app.state.metrics
    # Several workers' files are read from disk: off the event loop.
    body = collected.render() if collected.multiprocess_dir is None else await anyio.to_thread.run_sync(
        collected.render)
    return Response(body, media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})


def metrics_routes() -> list[Route]:
    return [Route("/metrics", metrics, methods=["GET"]), Route("/v1/metrics", metrics, methods=["GET"])]
