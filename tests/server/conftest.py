"""Fixtures for in-process proxy tests: a key store with one key, the app, and an httpx client on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings, load_settings
from cfai_cli.store.keys import KeyStore
from tests.fake_workers import FakeWorkers


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings({"account_id": "0123abcd", "api_token": "cf-secret-token-value", "timeout": 5,
                          "max_retries": 2}, environ={"CFAI_HOME": str(tmp_path)})


@pytest.fixture
def api_key(settings: Settings) -> str:
    key, _ = KeyStore(settings.database).create("tests")
    return key


@pytest.fixture
def fake() -> FakeWorkers:
    return FakeWorkers()


ClientFactory = Callable[..., "asynccontextmanager[httpx.AsyncClient]"]


@pytest.fixture
def proxy(settings: Settings, api_key: str, fake: FakeWorkers):  # type: ignore[no-untyped-def]
    """`async with proxy() as client:` an httpx client talking to the app in-process, key already set."""

    @asynccontextmanager
    async def open_client(*, key: str | None = api_key, **app_options: object) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(settings, transport=fake.transport(), **app_options)  # type: ignore[arg-type]
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        # Without keys the proxy answers only loopback names (server.loopback).
        base_url = "http://127.0.0.1" if app_options.get("no_auth") else "http://proxy.test"
        async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=base_url, headers=headers
        ) as client:
            yield client

    return open_client


@asynccontextmanager
async def offline(settings: Settings, **changes: object) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the app answering from the built-in emulator, with `changes` to its settings."""
    app = create_app(replace(settings, **changes).as_offline())  # type: ignore[arg-type]
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test") as client:
        yield client
