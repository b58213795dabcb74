"""Rate limits hold exactly under concurrency across two workers: a real `cfai serve --workers 2` in front of a
stand-in Workers AI, forty chat requests at once on a key allowed ten a minute; every admitted request's tokens
counted once in its tokens-per-minute window; a key past its tokens per minute refused by both workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from cfai_cli.settings import load_settings
from cfai_cli.store.keys import KeyPolicy, KeyStore
from tests.billing_workers import COMPLETION_TOKENS, PROMPT_TOKENS, BillingWorkersAI
from tests.openai_schema import validate
from tests.servers import free_port, stop_server, wait_for_health

MODEL = "@cf/meta/llama-3.1-8b-instruct"
TOKENS = PROMPT_TOKENS + COMPLETION_TOKENS  # what each answer of the stand-in uses
TPM = 100 * TOKENS


@dataclass
class Served:
    port: int
    standin: BillingWorkersAI
    keys: dict[str, str]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("limits-home")
    with BillingWorkersAI().running() as standin:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CFAI_", "CLOUDFLARE_"))}
        env.update(CFAI_HOME=str(home), CLOUDFLARE_ACCOUNT_ID="acc", CLOUDFLARE_API_TOKEN="token",
                   CFAI_API_BASE=standin.api_base)
        store = KeyStore(load_settings(environ=env).database)
        keys = {name: store.create(name, policy)[0] for name, policy in {
            "ten a minute": KeyPolicy(rpm=10, tpm=TPM),
            "two answers' tokens": KeyPolicy(tpm=2 * TOKENS)}.items()}
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "cfai_cli", "serve", "--port", str(port), "--workers", "2",
                                 "--no-ui"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            wait_for_health(proc, port, seconds=30)
            yield Served(port, standin, keys)
        finally:
            _, err = stop_server(proc)
        assert "Traceback" not in err, err


def post(served: Served, key: str) -> tuple[int, dict[str, str], dict[str, object]]:
    """A chat request on a new connection (so that both workers get some): status, headers, JSON body."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{served.port}/v1/chat/completions", method="POST",
        data=json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {served.keys[key]}"})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), json.loads(error.read())


def rate_limited(body: dict[str, object]) -> str:
    validate(body, "ErrorResponse")
    error = body["error"]
    assert isinstance(error, dict) and error["code"] == "rate_limit_exceeded"
    return str(error["message"])


def test_forty_at_once_exactly_ten_are_served_and_their_tokens_counted_once(served: Served) -> None:
    calls = served.standin.calls
    with ThreadPoolExecutor(max_workers=40) as pool:
        answers = list(pool.map(lambda _: post(served, "ten a minute"), range(40)))
    assert sorted(status for status, _, _ in answers) == [200] * 10 + [429] * 30
    assert all("10 requests per minute" in rate_limited(body) for status, _, body in answers if status == 429)
    assert served.standin.calls - calls == 10  # the refused ones never reached Workers AI
    # The ten answers' tokens are recorded as each ends: a refused request (which records nothing) reads them.
    deadline = time.monotonic() + 5
    while True:
        status, headers, _ = post(served, "ten a minute")
        remaining = int(headers["x-ratelimit-remaining-tokens"])
        if remaining == TPM - 10 * TOKENS or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status == 429 and remaining == TPM - 10 * TOKENS
    assert headers["x-ratelimit-remaining-requests"] == "0"


def test_a_key_past_its_tokens_per_minute_is_refused_by_every_worker(served: Served) -> None:
    assert [post(served, "two answers' tokens")[0] for _ in range(2)] == [200, 200]
    deadline = time.monotonic() + 5
    while post(served, "two answers' tokens")[0] == 200 and time.monotonic() < deadline:
        time.sleep(0.05)  # the second answer's tokens are recorded just after it ends
    calls = served.standin.calls
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: post(served, "two answers' tokens"), range(20)))
    assert [status for status, _, _ in answers] == [429] * 20
    assert all(f"{2 * TOKENS} tokens per minute" in rate_limited(body) for _, _, body in answers)
    assert served.standin.calls == calls
