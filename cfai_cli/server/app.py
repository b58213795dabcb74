"""The Starlette app factory and `serve()`: the OpenAI-compatible proxy in front of Workers AI.

Imports starlette, uvicorn (in serve only), service, store, settings and errors; never typer or rich.
Authentication is on unless the caller disables it, which `check_bind` allows only on loopback.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.types import ASGIApp

from cfai_cli.errors import ConfigError
from cfai_cli.server.auth import KeyAuth
from cfai_cli.server.errors import HANDLERS
from cfai_cli.server.routes import routes
from cfai_cli.server.routes.images import FILES_PREFIX
from cfai_cli.service.context import open_context
from cfai_cli.settings import Settings
from cfai_cli.store.keys import KeyStore


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, *, no_auth: bool, keys: KeyStore) -> None:
    """Refuse the two ways a proxy holding a Cloudflare token could end up open to others."""
    if no_auth and not is_loopback(host):
        raise ConfigError(f"--no-auth is only allowed on a loopback address (127.0.0.1, ::1), not {host}.")
    if not no_auth and keys.count_active() == 0:
        raise ConfigError(
            "No API keys exist yet, so every request would be refused. Run `cfai keygen` to make one"
            + (", or use --no-auth on this loopback address." if is_loopback(host) else ".")
        )


def create_app(
    settings: Settings,
    *,
    no_auth: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
    image_transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """The proxy app; `transport` replaces the network to Workers AI (tests and --offline use it)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_context(settings, transport=transport, image_transport=image_transport) as ctx:
            app.state.ctx = ctx
            yield

    # Fail at start-up, not on the first request, when credentials are missing.
    settings.require_credentials()
    app = Starlette(routes=routes(), exception_handlers=HANDLERS, lifespan=lifespan)  # type: ignore[arg-type]
    app.state.max_body_bytes = int(settings.max_body_mb * 1024 * 1024)
    app.state.offline = settings.offline
    if not no_auth:
        files = () if settings.image_url_auth else (f"/v1{FILES_PREFIX}", FILES_PREFIX)
        app.add_middleware(KeyAuth, keys=KeyStore(settings.database), open_prefixes=files)
    return app


def serve(settings: Settings, *, host: str, port: int, no_auth: bool = False, log_level: str = "info") -> None:
    """Run the proxy with uvicorn until interrupted."""
    check_bind(host, no_auth=no_auth, keys=KeyStore(settings.database))
    import uvicorn

    app: ASGIApp = create_app(settings, no_auth=no_auth)
    uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False, proxy_headers=False)
