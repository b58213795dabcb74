"""The per-process context that service functions run in: settings, upstream clients, clock and ids.

Imports upstream, settings, errors. The clock and the id source are fields so tests can pin them.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from cfai_cli.settings import OFFLINE_API_BASE, Settings
from cfai_cli.upstream.fetch import ImageFetcher
from cfai_cli.upstream.workers import WorkersAIClient

# Prefixes OpenAI joins with "_" (call_…, resp_…, msg_…); the others take "-" (chatcmpl-…, cmpl-…).
_UNDERSCORE_PREFIXES = frozenset({"call", "resp", "msg", "fc", "fco", "rs"})


def new_id(prefix: str) -> str:
    """OpenAI-style ids: chatcmpl-…, call_…, resp_…; 24 random url-safe characters."""
    sep = "_" if prefix in _UNDERSCORE_PREFIXES else "-"
    return f"{prefix}{sep}{secrets.token_urlsafe(18).replace('-', 'x').replace('_', 'y')}"


@dataclass
class Context:
    settings: Settings
    workers: WorkersAIClient
    images: ImageFetcher
    clock: Callable[[], float] = time.time
    ids: Callable[[str], str] = new_id
    cache: dict[str, Any] = field(default_factory=dict)

    def now(self) -> int:
        return int(self.clock())


def offline_transport() -> httpx.AsyncBaseTransport:
    from cfai_cli.upstream.emulator import create_emulator_app

    return httpx.ASGITransport(app=create_emulator_app())


@asynccontextmanager
async def open_context(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    image_transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[Context]:
    """A ready Context; `transport` replaces the network to Workers AI (tests, --offline)."""
    account_id, token = settings.require_credentials()
    if settings.offline and transport is None:
        transport = offline_transport()
    workers = WorkersAIClient(
        account_id=account_id,
        api_token=token,
        api_base=OFFLINE_API_BASE if settings.offline else settings.api_base,
        timeout=settings.timeout,
        max_retries=settings.max_retries,
        transport=transport,
        max_connections=max(1, settings.max_connections),
    )
    images = ImageFetcher(allow_private=settings.allow_private_fetch, transport=image_transport)
    ctx = Context(settings=settings, workers=workers, images=images)

    async def suggest(model_id: str) -> str:
        from cfai_cli.service.models import suggest_models  # models imports this module

        return await suggest_models(ctx, model_id)

    workers.suggest = suggest
    try:
        yield ctx
    finally:
        await workers.aclose()
        await images.aclose()
