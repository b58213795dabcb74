"""What the proxy loads before its first /health answer (issue 25, time to ready): the middleware, the context and
the stores it checks at start, and not what only later requests use, which the first request that needs it or
the warm-up after the first /health loads instead."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cfai_cli.server import upgrade

# Each was imported before the first /health answer until 2026-12-02: the routes' helpers and the chat models
# (through server.auth and server.observe), the response cache's service, the retention pass's stores
# (server.housekeeping), the model catalogue's service (server.routes.ui), the token estimator, and anyio's
# asyncio backend (the account meter's lock).
LATER = ("cfai_cli.server.routes.common", "cfai_cli.core.openai.chat", "cfai_cli.service.cache",
         "cfai_cli.store.retention", "cfai_cli.store.cache", "cfai_cli.store.files", "cfai_cli.core.tokens",
         "cfai_cli.service.chat_stream", "cfai_cli.service.models", "anyio._backends._asyncio")

PROBE = """
import asyncio, json, os, sys
import httpx
from cfai_cli.server import app as server_app
from cfai_cli.settings import load_settings
from cfai_cli.store.keys import KeyPolicy, KeyStore

async def main():
    settings = load_settings()
    key, _ = KeyStore(settings.database).create("t", KeyPolicy())
    app = server_app.create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test") as client:
        assert (await client.get("/health")).status_code == 200
        loaded = sorted(sys.modules)  # before the warm-up, which starts 50 ms after the answer
        while app.state.housekeeping.last is None:  # the first retention pass follows the first /health
            await asyncio.sleep(0.01)
        answer = await client.post("/v1/chat/completions", json={"model": "m"},
                                   headers={"Authorization": f"Bearer {key}"})
        print(json.dumps({"loaded": loaded, "pruned": app.state.housekeeping.last is not None,
                          "chat": [answer.status_code, answer.json()["error"]["param"]]}))

asyncio.run(main())
"""


def test_the_first_health_answer_loads_nothing_only_later_requests_use(tmp_path: Path) -> None:
    env = {"CFAI_HOME": str(tmp_path), "CLOUDFLARE_ACCOUNT_ID": "0" * 32, "CLOUDFLARE_API_TOKEN": "t",
           "CFAI_API_BASE": "http://127.0.0.1:9/client/v4", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    loaded = set(found["loaded"])
    assert {"cfai_cli.server.auth", "cfai_cli.server.observe", "cfai_cli.service.context"} <= loaded
    assert not loaded & set(LATER), sorted(loaded & set(LATER))
    assert found["pruned"]  # housekeeping's first pass ran once the server was up
    assert found["chat"] == [400, "messages"]  # a later request loads its route and models, and checks its body


def test_uvicorn_loads_its_websocket_protocol_only_for_an_upgrade() -> None:
    code = ("import sys; from cfai_cli.server.upgrade import websocket_option; option = websocket_option(); "
            "print(callable(option), 'websockets' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False"]
    assert upgrade.websocket_option() is upgrade.websocket_protocol  # websockets is installed here
