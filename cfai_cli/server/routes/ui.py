"""The browser page at / and /ui: a model browser and, for admin keys, a usage view and a Keys view.

Imports starlette, service and settings. The page and its static files are open and carry no data; everything
shown comes from JSON endpoints that need the key the person types in (kept in the tab's sessionStorage):
/ui/api/models here, and the admin API (/v1/admin/usage/series, /v1/admin/keys) for usage and keys.
No CDN, no inline script: the Content-Security-Policy allows only this origin.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cfai_cli.server.responses import API_HEADERS, JSONResponse

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_SCRIPTS = ("app.js", "common.js", "usage.js", "keys.js")  # ES modules: app.js imports the others
_ASSETS = {"index.html": "text/html; charset=utf-8", "app.css": "text/css; charset=utf-8",
           **dict.fromkeys(_SCRIPTS, "text/javascript; charset=utf-8")}
OPEN_PATHS = ("/", "/ui", "/ui/", "/ui/app.css", *(f"/ui/{name}" for name in _SCRIPTS))


def _asset(name: str) -> Response:
    from importlib.resources import files  # here: server.auth imports this module before the first /health answer

    body = files("cfai_cli.server").joinpath("ui", name).read_bytes()
    return Response(body, media_type=_ASSETS[name], headers={"Content-Security-Policy": CSP,
                                                              "Cache-Control": "no-cache"})


async def page(request: Request) -> Response:
    return _asset("index.html")


async def script(request: Request) -> Response:
    return _asset(request.url.path.rsplit("/", 1)[1])  # one of _SCRIPTS: only their exact paths route here


async def style(request: Request) -> Response:
    return _asset("app.css")


async def models_view(request: Request) -> Response:
    """The catalogue with each model's cfai aliases (needs the `models` scope)."""
    # Imported here: server.auth imports this module (OPEN_PATHS) before `cfai serve` answers its first /health.
    from cfai_cli.service.models import catalogue

    ctx = request.app.state.ctx
    aliases: dict[str, list[str]] = {}
    for alias, target in sorted(ctx.settings.aliases.items()):
        aliases.setdefault(target, []).append(alias)
    data = [{**m.to_json(), "aliases": aliases.get(m.id, [])} for m in await catalogue(ctx)]
    return JSONResponse({"object": "list", "data": data}, headers=API_HEADERS)


def ui_routes() -> list[tuple[str, Any, list[str]]]:
    return [("/", page, ["GET"]), ("/ui", page, ["GET"]), ("/ui/", page, ["GET"]),
            *((f"/ui/{name}", script, ["GET"]) for name in _SCRIPTS), ("/ui/app.css", style, ["GET"]),
            ("/ui/api/models", models_view, ["GET"])]
