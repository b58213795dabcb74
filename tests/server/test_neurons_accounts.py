"""Neurons per Cloudflare account: the account that answered is charged, not the one that failed over to it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from cfai_cli.server.app import create_app
from cfai_cli.settings import load_settings
from cfai_cli.store.usage import UsageLog, accounts_today
from tests.fake_upstreams import FakeUpstreams
from tests.fake_workers import envelope, error_envelope, fixed

pytestmark = pytest.mark.anyio

MAIN, BACKUP = "0123abcd", "feed0000"
MODEL = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
CONFIG = f"""
[upstreams.backup]
type = "cloudflare"
account_id = "{BACKUP}"
api_token_env = ["BACKUP_TOKEN", "BACKUP_TOKEN_2"]

[routes]
backup-first = ["backup:{MODEL}", "cloudflare:{MODEL}"]
"""
USAGE = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_each_account_is_charged_what_it_served(tmp_path: Path) -> None:
    up = FakeUpstreams()
    up.account(MAIN).models[MODEL] = fixed(200, envelope({"response": "main", "usage": USAGE}),
                                           headers={"cf-ai-neurons": "30"})
    up.account(BACKUP).models[MODEL] = fixed(429, error_envelope(4006, "you have used up your daily free allocation "
                                                                       "of 10,000 neurons"))
    (tmp_path / "config.toml").write_text(CONFIG)
    settings = load_settings({"account_id": MAIN, "api_token": "t0", "timeout": 5, "max_retries": 0},
                             environ={"CFAI_HOME": str(tmp_path), "BACKUP_TOKEN": "b1", "BACKUP_TOKEN_2": "b2"})
    app = create_app(settings, no_auth=True, transport=up.transport())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        answer = await client.post("/v1/chat/completions", json={
            "model": "backup-first", "messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-cfai-upstream"] == "cloudflare" and answer.headers["x-cfai-neurons"] == "30"
        # The backup recovers; its answers are estimated (it reports nothing), under its own name.
        up.account(BACKUP).models[MODEL] = fixed(200, envelope({"response": "backup", "usage": USAGE}))
        app.state.ctx.router.cooldowns.succeeded("backup", MODEL)
        app.state.ctx.router.cooldowns.succeeded("backup#2", MODEL)
        second = await client.post("/v1/chat/completions", json={
            "model": "backup-first", "messages": [{"role": "user", "content": "hi"}]})
        assert second.headers["x-cfai-upstream"].startswith("backup")
        assert second.headers["x-cfai-neurons-source"] == "estimated"
    rows = UsageLog(settings.database).rows(since=0)
    assert [(r.account, r.neurons_estimated) for r in rows] == [("cloudflare", False), ("backup", True)]
    today = {a.account: a for a in accounts_today(rows, now=time.time())}
    assert today["cloudflare"].neurons == 30.0 and today["backup"].neurons == pytest.approx(rows[1].neurons)
    assert today["backup"].estimated_neurons == today["backup"].neurons > 0
