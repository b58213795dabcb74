"""The browser page at / and /ui: a model browser and, for admin keys, a usage dashboard.

Imports starlette, service, store and settings. The page and its two static files are open and carry no
data; everything shown comes from two JSON endpoints that need the key the person types in (kept in
the tab's sessionStorage). No CDN, no inline script: the Content-Security-Policy allows only this origin.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from importlib.resources import files
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response

from cfai_cli.server.errors import API_HEADERS
from cfai_cli.server.responses import JSONResponse
from cfai_cli.service.models import catalogue
from cfai_cli.store.usage import UsageLog, parse_since, summarise, timeline

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_ASSETS = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
           "app.css": "text/css; charset=utf-8"}
OPEN_PATHS = ("/", "/ui", "/ui/", "/ui/app.js", "/ui/app.css")


def _asset(name: str) -> Response:
    body = files("cfai_cli.server").joinpath("ui", name).read_bytes()
    return Response(body, media_type=_ASSETS[name], headers={"Content-Security-Policy": CSP,
                                                              "Cache-Control": "no-cache"})


async def page(request: Request) -> Response:
    return _asset("index.html")


async def script(request: Request) -> Response:
    return _asset("app.js")


async def style(request: Request) -> Response:
    return _asset("app.css")


async def models_view(request: Request) -> Response:
    """The catalogue with each model's cfai aliases (needs the `models` scope)."""
    ctx = request.app.state.ctx
    aliases: dict[str, list[str]] = {}
    for alias, target in sorted(ctx.settings.aliases.items()):
        aliases.setdefault(target, []).append(alias)
    data = [{**m.to_json(), "aliases": aliases.get(m.id, [])} for m in await catalogue(ctx)]
    return JSONResponse({"object": "list", "data": data}, headers=API_HEADERS)


async def usage_view(request: Request) -> Response:
    """Usage over time and per key and model (needs the `admin` scope)."""
    ctx = request.app.state.ctx
    since_text = request.query_params.get("since", "24h")
    try:
        since = parse_since(since_text)
    except ValueError:
        since = parse_since("24h")
    await request.app.state.recorder.flush()  # show requests of the last second too
    log = UsageLog(ctx.settings.database)
    rows = await anyio.to_thread.run_sync(lambda: log.rows(since=since))
    body: dict[str, Any] = {
        "since": since, "until": time.time(),
        "timeline": [asdict(p) for p in timeline(rows, since=since, until=time.time())],
        "by_model": [asdict(s) for s in summarise(rows, by="model")],
        "by_key": [asdict(s) for s in summarise(rows, by="key")],
        "total": {"requests": len(rows), "errors": sum(r.status >= 400 for r in rows),
                  "tokens": sum(r.prompt_tokens + r.completion_tokens for r in rows)},
    }
    return JSONResponse(body, headers=API_HEADERS)


def ui_routes() -> list[tuple[str, Any, list[str]]]:
    return [("/", page, ["GET"]), ("/ui", page, ["GET"]), ("/ui/", page, ["GET"]), ("/ui/app.js", script, ["GET"]),
            ("/ui/app.css", style, ["GET"]), ("/ui/api/models", models_view, ["GET"]),
            ("/ui/api/usage", usage_view, ["GET"])]
