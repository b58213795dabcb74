"""service.models.catalogue: requests that need the catalogue while it is being fetched share one fetch."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from cfai_cli.service.context import open_context
from cfai_cli.service.models import catalogue
from cfai_cli.service.record import RequestRecord
from cfai_cli.settings import load_settings

pytestmark = pytest.mark.anyio
MODEL = {"name": "@cf/meta/llama-3.1-8b-instruct-fast", "task": {"name": "Text Generation"}, "properties": []}


async def test_concurrent_requests_share_one_catalogue_fetch(tmp_path: Path) -> None:
    searches: list[str] = []

    async def workers(request: httpx.Request) -> httpx.Response:
        assert request.url.path.endswith("/ai/models/search")
        searches.append(str(request.url))
        await asyncio.sleep(0.05)  # long enough for every request to arrive while it is on its way
        return httpx.Response(200, json={"success": True, "errors": [], "messages": [], "result": [MODEL]})

    settings = load_settings({"account_id": "0123456789abcdef0123456789abcdef", "api_token": "t"},
                             environ={"CFAI_HOME": str(tmp_path)})
    async with open_context(settings, transport=httpx.MockTransport(workers)) as ctx:
        found = await asyncio.gather(*(catalogue(ctx.for_request(RequestRecord())) for _ in range(8)))
        assert len(searches) == 1
        assert all([m.id for m in models] == [MODEL["name"]] for models in found)
        await catalogue(ctx)  # cached now: no second fetch
        assert len(searches) == 1
