"""Daily caps per Cloudflare account (`[upstreams.NAME] daily_neurons`, `free_tier_only`): the router skips an
account whose neurons today have reached its cap before calling it, fails over to the next, and answers 429
insufficient_quota naming the caps and their reset when every account is capped."""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path

import httpx
import pytest

from cfai_cli.core.config_file import parse_routing
from cfai_cli.errors import ConfigError
from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings, load_settings
from cfai_cli.store.usage import UsageLog, UsageRow
from tests.fake_workers import envelope
from tests.openai_schema import validate

pytestmark = pytest.mark.anyio

MODEL = "@cf/meta/llama-3.1-8b-instruct"
FIRST, SECOND = "f1f1f1f1", "f2f2f2f2"
CONFIG = f"""
[upstreams.first]
type = "cloudflare"
account_id = "{FIRST}"
api_token = "first-token"
daily_neurons = 15

[upstreams.second]
type = "cloudflare"
account_id = "{SECOND}"
api_token = "second-token"
daily_neurons = 25

[routes]
capped = ["first:{MODEL}", "second:{MODEL}"]
"""
CHAT = {"model": "capped", "messages": [{"role": "user", "content": "hi"}]}


class Accounts:
    """Cloudflare accounts that bill 10 neurons a call (cf-ai-neurons) and remember who was called."""

    def __init__(self) -> None:
        self.called: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.called.append(request.url.path.split("/accounts/", 1)[1].split("/", 1)[0])
        json.loads(request.content)
        usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        return httpx.Response(200, json=envelope({"response": "ok", "usage": usage}), headers={"cf-ai-neurons": "10"})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "config.toml").write_text(CONFIG)
    return load_settings({"account_id": "0123abcd", "api_token": "main-token", "timeout": 5, "max_retries": 0},
                         environ={"CFAI_HOME": str(tmp_path)})


def client_for(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")  # type: ignore[arg-type]


async def test_capped_accounts_are_skipped_then_refused(settings: Settings) -> None:
    accounts = Accounts()
    app = create_app(settings, transport=httpx.MockTransport(accounts), no_auth=True)
    async with app.router.lifespan_context(app), client_for(app) as client:
        served = []
        for _ in range(5):  # first: 0, 10 (< 15) then capped at 20; second: 0, 10, 20 (< 25) then capped at 30
            answer = await client.post("/v1/chat/completions", json=CHAT)
            assert answer.status_code == 200, answer.text
            served.append(answer.headers["x-cfai-upstream"])
        assert served == ["first", "first", "second", "second", "second"]
        assert accounts.called == [FIRST, FIRST, SECOND, SECOND, SECOND]
        refused = await client.post("/v1/chat/completions", json=CHAT)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        validate(refused.json(), "ErrorResponse")
        error = refused.json()["error"]
        assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
        assert "first has used its daily cap of 15 neurons (20.00 today)" in error["message"]
        assert "second has used its daily cap of 25 neurons (30.00 today)" in error["message"]
        assert "T00:00:00Z (00:00 UTC, in " in error["message"]
        assert len(accounts.called) == 5  # refused before any call


async def test_spend_in_the_usage_log_counts_for_every_worker(settings: Settings) -> None:
    # Another worker's rows, already written: first has spent its cap today, second has not (yesterday's rows
    # do not count).
    now = time.time()
    UsageLog(settings.database).write([
        UsageRow(ts=now - 60, key_id=None, route="chat/completions", model="capped", upstream_model=MODEL,
                 status=200, prompt_tokens=3, completion_tokens=2, latency_ms=5, bytes_in=0, bytes_out=0,
                 error_code=None, upstream="first", neurons=15, account="first"),
        UsageRow(ts=now - 86_400 * 2, key_id=None, route="chat/completions", model="capped", upstream_model=MODEL,
                 status=200, prompt_tokens=3, completion_tokens=2, latency_ms=5, bytes_in=0, bytes_out=0,
                 error_code=None, upstream="second", neurons=1000, account="second")])
    accounts = Accounts()
    first_worker = create_app(settings, transport=httpx.MockTransport(accounts), no_auth=True)
    second_worker = create_app(settings, transport=httpx.MockTransport(accounts), no_auth=True)
    async with first_worker.router.lifespan_context(first_worker), \
            second_worker.router.lifespan_context(second_worker), \
            client_for(first_worker) as one, client_for(second_worker) as two:
        assert (await one.post("/v1/chat/completions", json=CHAT)).headers["x-cfai-upstream"] == "second"
        assert (await two.post("/v1/chat/completions", json=CHAT)).headers["x-cfai-upstream"] == "second"
        # Each worker sees its own spend at once, the other's once written (the recorders write every second).
        await first_worker.state.recorder.flush()
        await second_worker.state.recorder.flush()
        assert (await one.post("/v1/chat/completions", json=CHAT)).status_code == 200  # second: 20 < 25
        await first_worker.state.recorder.flush()
        assert (await two.post("/v1/chat/completions", json=CHAT)).status_code == 429  # second: 30 >= 25
        assert accounts.called == [SECOND, SECOND, SECOND]


async def test_an_uncapped_default_account_still_serves_a_plain_model(settings: Settings) -> None:
    accounts = Accounts()
    app = create_app(settings, transport=httpx.MockTransport(accounts), no_auth=True)
    async with app.router.lifespan_context(app), client_for(app) as client:
        for _ in range(4):
            answer = await client.post("/v1/chat/completions", json={**CHAT, "model": MODEL})
            assert answer.status_code == 200 and answer.headers["x-cfai-upstream"] == "cloudflare"


def test_the_cap_settings() -> None:
    def upstream(extra: str) -> str:
        return f'[upstreams.free]\ntype = "cloudflare"\naccount_id = "{FIRST}"\napi_token = "t"\n{extra}\n'

    free = parse_routing(tomllib.loads(upstream("free_tier_only = true")), source="config.toml")
    assert free.upstreams[0].daily_neurons == 10_000 and free.public()["upstreams"]["free"]["daily_neurons"] == 10_000
    assert parse_routing(tomllib.loads(upstream("")), source="x").upstreams[0].daily_neurons is None
    for bad in ("daily_neurons = 0", "daily_neurons = 5\nfree_tier_only = true", 'daily_neurons = "lots"'):
        with pytest.raises(ConfigError):
            parse_routing(tomllib.loads(upstream(bad)), source="config.toml")
    with pytest.raises(ConfigError, match="daily_neurons"):
        parse_routing(tomllib.loads(
            '[upstreams.groq]\ntype = "openai"\nbase_url = "https://groq.test/v1"\ndaily_neurons = 5\n'),
            source="config.toml")
