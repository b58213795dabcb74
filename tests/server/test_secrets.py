"""Secrets never leak: a hostile upstream echoes the Authorization header and the account id (in the URL)
into its error messages and into a stream's error event; no client body, /health?detail=1 or log line may
show any configured secret (both Cloudflare accounts' tokens and ids, a rotation list, a provider key).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings, load_settings
from cfai_cli.store.keys import SCOPES, KeyPolicy, KeyStore
from tests.fake_workers import error_envelope, sse, sse_response

pytestmark = pytest.mark.anyio

MAIN_ACCOUNT, MAIN_TOKEN = "0123456789abcdef0123456789abcdef", "cf-main-token-value-0000"
BACKUP_ACCOUNT = "feedbeef00000000feedbeef00000000"
BACKUP_TOKENS = ("backup-token-one-1111", "backup-token-two-2222")
PROVIDER_KEY = "prov-secret-key-3333"
SECRETS = (MAIN_ACCOUNT, MAIN_TOKEN, BACKUP_ACCOUNT, *BACKUP_TOKENS, PROVIDER_KEY)
MODEL = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
REFUSED = "@cf/meta/llama-3.1-8b-instruct-fast"  # answers 400: a client error, raised without failover
CONFIG = f"""
[upstreams.backup]
type = "cloudflare"
account_id = "{BACKUP_ACCOUNT}"
api_token = {json.dumps(list(BACKUP_TOKENS))}

[upstreams.prov]
type = "openai"
base_url = "https://prov.test/v1"
api_key = "{PROVIDER_KEY}"

[routes]
everything = ["cloudflare:{MODEL}", "backup:{MODEL}", "prov:some-model"]
"""


def echo(request: httpx.Request) -> str:
    return f"refused {request.headers.get('authorization')} on {request.url} (account in {request.url.path})"


async def hostile(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content or b"{}")
    if request.url.host == "prov.test":
        return httpx.Response(500, json={"error": {"message": echo(request), "type": "server_error"}})
    if request.url.path.endswith("/ai/models/search"):
        return httpx.Response(500, json=error_envelope(7000, echo(request)))
    if request.url.path.endswith(REFUSED):
        return httpx.Response(400, json=error_envelope(5006, echo(request)))
    if body.get("stream"):  # a good start, then the echo in the stream's error event
        return sse_response(sse({"response": "Hel"}, {"errors": [{"code": 3043, "message": echo(request)}]},
                                done=False))
    return httpx.Response(500, json=error_envelope(3043, echo(request)))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "config.toml").write_text(CONFIG)
    return load_settings({"account_id": MAIN_ACCOUNT, "api_token": MAIN_TOKEN, "max_retries": 0, "timeout": 5},
                         environ={"CFAI_HOME": str(tmp_path)})


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Everything written by a plain handler on the root logger, as an operator's log file would hold it."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret} leaked"


async def test_no_secret_reaches_a_client_health_or_the_log(settings: Settings, log_output: io.StringIO,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    admin, _ = KeyStore(settings.database).create("admin", KeyPolicy(scopes=frozenset(SCOPES)))
    app = create_app(settings, transport=httpx.MockTransport(hostile))
    chat: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test",
            headers={"Authorization": f"Bearer {admin}"}) as client:
        answers = [
            await client.post("/v1/chat/completions", json={**chat, "model": "everything"}),
            await client.post("/v1/chat/completions", json={**chat, "model": MODEL}),
            await client.post("/v1/chat/completions", json={**chat, "model": REFUSED}),
            await client.post("/v1/chat/completions", json={**chat, "model": MODEL, "stream": True}),
            await client.post("/v1/chat/completions", json={**chat, "model": "everything", "stream": True}),
            await client.post("/v1/responses", json={"model": MODEL, "input": "hi"}),
            await client.post("/v1/responses", json={"model": MODEL, "input": "hi", "stream": True}),
            await client.post("/v1/embeddings", json={"model": MODEL, "input": "hi"}),
            await client.get("/v1/models"),
        ]
        health = await client.get("/health?detail=1")
        logging.getLogger("some.library").warning("a library logs what it saw: %s %s", MAIN_TOKEN, BACKUP_ACCOUNT)
    statuses = [a.status_code for a in answers]
    assert statuses == [502, 502, 400, 200, 200, 502, 200, 502, 502]
    for answer in answers:
        assert "refused" in answer.text  # the upstream's own words still reach the client...
        assert_clean(answer.text)  # ...without what it echoed
    assert '"error"' in answers[3].text and "Hel" in answers[3].text  # the mid-stream error, in-band
    assert "response.failed" in answers[6].text
    upstreams = health.json()["upstreams"]
    errors = [k["last_error"]["message"] for u in upstreams for k in u["keys"] if "last_error" in k]
    assert len(errors) == 4 and all("refused" in e for e in errors)  # every lane failed and says why
    assert_clean(health.text)
    logged = log_output.getvalue()
    assert "some.library" in logged and "failed on" in logged  # the router's warnings are there
    assert_clean(logged)
    assert_clean("\n".join(r.getMessage() for r in caplog.records))
    # The failed streamed response was stored (for previous_response_id): the database holds no secret either.
    import sqlite3

    with sqlite3.connect(settings.database) as db:
        stored = "\n".join(row[0] for row in db.execute("SELECT response FROM responses"))
    assert "refused" in stored
    assert_clean(stored)
