"""server.routes: the route table names its endpoints without importing them (time to ready, issue 25), and
says what each endpoint module serves, exactly; a request to a route whose module is not loaded yet loads it."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
import pytest
from starlette.applications import Starlette

from cfai_cli.server import app as server_app
from cfai_cli.server import routes as table
from cfai_cli.settings import Settings
from tests.fake_workers import FakeWorkers


def test_the_table_matches_every_endpoint_module() -> None:
    table.warm()  # raises on the first difference between a module's ROUTES and the table


@pytest.mark.parametrize("missing", ["/moderations", "/admin/usage/series"])
def test_a_route_missing_from_the_table_is_caught(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    monkeypatch.setattr(table, "TABLE", tuple(r for r in table.TABLE if r[2] != missing))
    with pytest.raises(RuntimeError, match=r"routes\.(moderations|admin)\.ROUTES"):
        table.warm()


def test_a_misspelt_module_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(table, "TABLE", (*table.TABLE, ("moderation", "moderations", "/x", ("POST",))))
    with pytest.raises(RuntimeError, match=r"routes\.moderation is missing"):
        table.routes()


def test_building_the_app_imports_no_endpoint_module() -> None:
    code = ("import sys; from cfai_cli.server import app; "
            "print(sorted(m for m in sys.modules if m.startswith('cfai_cli.server.routes.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = {name.rsplit(".", 1)[1] for name in eval(out)}
    assert not loaded & {module for module, _, _, _ in table.TABLE}, loaded


async def _started(app: Starlette) -> None:
    while not hasattr(app.state, "batches"):  # the batch executor starts once the warm-up is done
        await asyncio.sleep(0.01)


@pytest.mark.anyio
@pytest.mark.parametrize("trigger", ["health", "batch"])
async def test_the_warm_up_starts_when_health_answers_or_a_batch_comes(
        settings: Settings, api_key: str, fake: FakeWorkers, monkeypatch: pytest.MonkeyPatch, trigger: str) -> None:
    monkeypatch.setattr(server_app, "WARM_DELAY", 600.0)  # so only the trigger can start it within the test
    app = server_app.create_app(settings, transport=fake.transport())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test",
            headers={"Authorization": f"Bearer {api_key}"}) as client:
        await asyncio.sleep(0.1)
        assert not hasattr(app.state, "batches")
        if trigger == "health":
            assert (await client.get("/health")).status_code == 200
        else:
            upload = await client.post("/v1/files", data={"purpose": "batch"}, files={"file": (
                "b.jsonl", b'{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", '
                           b'"body": {"model": "@cf/baai/bge-base-en-v1.5", "input": "hi"}}\n')})
            assert upload.status_code == 200, upload.text
            made = await client.post("/v1/batches", json={"input_file_id": upload.json()["id"],
                                                          "endpoint": "/v1/embeddings", "completion_window": "24h"})
            assert made.status_code == 200, made.text
        await asyncio.wait_for(_started(app), 20)
    assert {module for module, _, _, _ in table.TABLE} <= {name.rsplit(".", 1)[1] for name in sys.modules
                                                          if name.startswith("cfai_cli.server.routes.")}
