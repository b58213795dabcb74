"""GET /health: open to all, and saying only whether the proxy is up and each upstream's state.

Imports starlette, service (through app state) and server.errors. `?detail=1` adds what an operator
needs (version, offline mode, each key's rests, counters and last error, secrets masked); server.auth
lets that through only with an `admin` key (or with auth off): without a key it is a 401, with a key
lacking the scope a 403. A shared gateway's /health also says whether its `store` (PostgreSQL) and
`coordination` (Redis) answer, and where (host:port): `"status": "degraded"` when one does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from cfai_cli import __version__
from cfai_cli.server.responses import API_HEADERS, JSONResponse

if TYPE_CHECKING:
    from cfai_cli.server.backends import Backends

HEALTH_PATHS = frozenset({"/health", "/v1/health"})
_NO = frozenset({b"0", b"false", b"no", b"off"})


def wants_detail(query_string: bytes) -> bool:
    """`detail`, `detail=1`, `detail=true` ask for the operator's view; `detail=0` (or none) does not."""
    for part in query_string.split(b"&"):
        name, _, value = part.partition(b"=")
        if name == b"detail":
            return value.strip().lower() not in _NO
    return False


async def health(request: Request) -> Response:
    ctx = getattr(request.app.state, "ctx", None)
    detail = wants_detail(request.scope.get("query_string", b""))
    if detail and request.app.state.keys_required:
        key = request.scope.get("state", {}).get("cfai_key")  # server.auth checked it; checked again here
        detail = key is not None and "admin" in key.policy.scopes
    body: dict[str, Any] = {"status": "ok"}
    if detail:
        body.update(version=__version__, offline=request.app.state.offline)
    if ctx is not None:
        await ctx.router.refresh_view()  # the rests every replica learned ([coordination] url)
        body["upstreams"] = ctx.router.health(detail=detail)
    backends: Backends = request.app.state.backends
    if backends:  # a shared gateway's PostgreSQL and Redis (server.backends); a single host has neither
        found = await backends.report()
        body.update(found)
        if any(part["status"] != "ok" for part in found.values()):
            body["status"] = "degraded"  # still a 200: the process is up, and answers what it can with clear 503s
    request.app.state.warm_up.set()  # the server is up and probed: it may load the rest now (server.app)
    return JSONResponse(body, headers=API_HEADERS)
