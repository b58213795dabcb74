"""The official `anthropic` Python SDK pointed at the proxy in process (loopback base_url, no network).

The SDK talks through httpx2; it gets an `http_client` on the app, with strict response validation and no
retries, so every answer it accepts is one the SDK's own types declare, and every error surfaces once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anthropic
import httpx
import httpx2

from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings

BASE = "http://proxy.test"

@asynccontextmanager
async def claude_on(settings: Settings, key: str | None, *, transport: httpx.AsyncBaseTransport | None = None,
                    bearer: bool = False) -> AsyncIterator[anthropic.AsyncAnthropic]:
    """The SDK on an app built from `settings` (with `transport` as Workers AI, else its settings' own); `key`
    None sends none, `bearer` sends it as `Authorization: Bearer` instead of `x-api-key`."""
    app = create_app(settings, transport=transport)
    async with app.router.lifespan_context(app), httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url=BASE) as http:
        credentials = {"auth_token": key} if bearer else {"api_key": key}
        yield anthropic.AsyncAnthropic(**credentials, base_url=BASE, http_client=http, max_retries=0,
                                       _strict_response_validation=True)


@asynccontextmanager
async def raw_on(settings: Settings, key: str | None, *, transport: httpx.AsyncBaseTransport | None = None
                 ) -> AsyncIterator[httpx.AsyncClient]:
    """A plain httpx client on the same app, for raw bodies and SSE, speaking as an Anthropic client does."""
    app = create_app(settings, transport=transport)
    headers = {"anthropic-version": "2023-06-01", **({"x-api-key": key} if key else {})}
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=BASE, headers=headers) as client:
        yield client
