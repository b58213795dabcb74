"""The HTTP library the installed `openai` SDK talks through: httpx2 from openai 3 on, httpx before.

Tests hand the SDK an `http_client` built on the in-process app; it must be of the SDK's own library.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import openai

from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings

try:
    import httpx2 as sdk_httpx  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the installed SDK
    import httpx as sdk_httpx  # type: ignore[no-redef]

__all__ = ["offline_raw", "offline_sdk", "sdk_httpx"]


@asynccontextmanager
async def offline_sdk(settings: Settings, key: str, *, strict: bool = True) -> AsyncIterator[openai.AsyncOpenAI]:
    """The real openai SDK on the app answering from the built-in emulator (strict validation by default)."""
    app = create_app(settings.as_offline())
    async with app.router.lifespan_context(app), sdk_httpx.AsyncClient(
        transport=sdk_httpx.ASGITransport(app=app), base_url="http://proxy.test/v1"
    ) as http:
        yield openai.AsyncOpenAI(api_key=key, base_url="http://proxy.test/v1", http_client=http, max_retries=0,
                                 _strict_response_validation=strict)


@asynccontextmanager
async def offline_raw(settings: Settings, key: str) -> AsyncIterator[httpx.AsyncClient]:
    """A plain httpx client on the same app, for raw bodies and SSE."""
    app = create_app(settings.as_offline())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://proxy.test/v1",
        headers={"Authorization": f"Bearer {key}"},
    ) as client:
        yield client
