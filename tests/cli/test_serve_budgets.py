"""Budgets cut off exactly under concurrency across two workers: a real `cfai serve --workers 2` in front of a
stand-in Workers AI that bills each call a known amount (reported on some calls, estimated by cfai on the
others), keys budgeted at exactly ten calls' worth, forty requests at once. Streams settle their hold at
their end and when their client leaves. `cfai usage --json` must add up to the budget."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cfai_cli.core.cost import usd_of_neurons
from cfai_cli.settings import load_settings
from cfai_cli.store.budgets import BudgetLedger
from cfai_cli.store.keys import KeyPolicy, KeyStore
from tests.billing_workers import BillingWorkersAI, cost
from tests.cli.conftest import Invoke
from tests.openai_schema import validate
from tests.servers import free_port, stop_server, wait_for_health

MODEL = "@cf/meta/llama-3.1-8b-instruct"
C = cost(MODEL)  # neurons per call


@dataclass
class Served:
    port: int
    home: Path
    database: Path
    standin: BillingWorkersAI
    keys: dict[str, tuple[str, str]]  # name -> (key, key id)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("budgets-home")
    with BillingWorkersAI().running() as standin:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CFAI_", "CLOUDFLARE_"))}
        env.update(CFAI_HOME=str(home), CLOUDFLARE_ACCOUNT_ID="acc", CLOUDFLARE_API_TOKEN="token",
                   CFAI_API_BASE=standin.api_base)
        database = load_settings(environ=env).database
        store = KeyStore(database)
        policies = {"warm": KeyPolicy(budget_neurons_per_day=1e9),
                    "day": KeyPolicy(budget_neurons_per_day=10 * C),
                    "month": KeyPolicy(budget_usd_per_month=usd_of_neurons(10 * C)),
                    "stream": KeyPolicy(budget_neurons_per_day=2 * C)}
        keys = {}
        for name, policy in policies.items():
            key, record = store.create(name, policy)
            keys[name] = (key, record.id)
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "cfai_cli", "serve", "--port", str(port), "--workers", "2",
                                 "--no-ui"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            wait_for_health(proc, port, seconds=30)
            served = Served(port, home, database, standin, keys)
            # One settled request of MODEL: its cost per call is known from here on (docs/cost.md, "Budgets").
            assert post(served, "warm", stream=False)[0] == 200
            yield served
        finally:
            _, err = stop_server(proc)
        assert "Traceback" not in err, err


def post(served: Served, key: str, *, stream: bool, content: str = "hi") -> tuple[int, dict[str, Any] | str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{served.port}/v1/chat/completions", method="POST",
        data=json.dumps({"model": MODEL, "stream": stream, "messages": [{"role": "user", "content": content}]}
                        ).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {served.keys[key][0]}"})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            text = response.read().decode()
            return response.status, text if stream else json.loads(text)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def burst(served: Served, key: str, count: int = 40) -> list[tuple[int, dict[str, Any] | str]]:
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(lambda _: post(served, key, stream=False), range(count)))


def refused(body: dict[str, Any] | str) -> str:
    assert isinstance(body, dict)
    validate(body, "ErrorResponse")
    assert (body["error"]["type"], body["error"]["code"]) == ("insufficient_quota", "insufficient_quota")
    return str(body["error"]["message"])


def usage_of(cli: Invoke, served: Served, key: str, requests: int) -> dict[str, Any]:
    """The key's group in `cfai usage --by key --json`, once its `requests` rows are written (once a second)."""
    deadline = time.monotonic() + 10
    while True:
        result = cli("usage", "--by", "key", "--since", "1h", "--json", env={"CFAI_HOME": str(served.home)})
        groups = {g["group"]: g for g in json.loads(result.stdout)["groups"]} if result.stdout else {}
        group: dict[str, Any] = groups.get(served.keys[key][1], {"requests": 0})
        if group["requests"] >= requests or time.monotonic() > deadline:
            assert group["requests"] == requests, group
            return group
        time.sleep(0.2)


@pytest.mark.parametrize("key", ["day", "month"])
def test_forty_at_once_exactly_ten_are_served(served: Served, cli: Invoke, key: str) -> None:
    calls, reported = served.standin.calls, served.standin.reported
    answers = burst(served, key)
    assert sorted(status for status, _ in answers) == [200] * 10 + [429] * 30
    budget = "neurons per day" if key == "day" else "per month"
    for status, body in answers:
        if status == 429:
            assert budget in refused(body)
    assert served.standin.calls - calls == 10  # the refused ones never reached Workers AI
    assert 0 < served.standin.reported - reported < 10  # reported on some calls, estimated on the others
    group = usage_of(cli, served, key, requests=40)
    assert group["errors"] == 30  # refusals are logged against their key
    assert group["neurons"] == pytest.approx(10 * C, rel=1e-9)
    assert 0 < group["estimated_neurons"] < group["neurons"]
    assert group["cost_usd"] == pytest.approx(usd_of_neurons(10 * C), rel=1e-9)
    ledger = BudgetLedger(served.database)
    key_id = served.keys[key][1]
    assert ledger.held(key_id, now=time.time()) == 0
    assert ledger.spent(key_id, now=time.time())[1] == pytest.approx(10 * C, rel=1e-9)
    status, body = post(served, key, stream=False)
    assert status == 429 and "has used its budget" in refused(body)


def test_a_stream_holds_until_its_end_or_its_client_leaving(served: Served, cli: Invoke) -> None:
    ledger = BudgetLedger(served.database)
    key_id = served.keys["stream"][1]  # a budget of two calls
    status, text = post(served, "stream", stream=True)
    assert status == 200 and isinstance(text, str) and text.rstrip().endswith("data: [DONE]")
    assert ledger.spent(key_id, now=time.time())[0] == pytest.approx(C, rel=1e-9)
    assert ledger.held(key_id, now=time.time()) == 0
    # A slow stream holds the last call's worth while it runs: another request does not fit meanwhile.
    body = json.dumps({"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "slow"}]})
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      f"Authorization: Bearer {served.keys['stream'][0]}\r\nContent-Length: {len(body)}\r\n\r\n"
                      + body).encode())
        seen = b""
        while b"data: " not in seen:
            seen += sock.recv(65536)
        assert seen.startswith(b"HTTP/1.1 200")
        assert ledger.held(key_id, now=time.time()) == pytest.approx(C, rel=1e-9)
        status, error = post(served, "stream", stream=False)
        assert status == 429 and f"{C:,.2f} held by requests in flight" in refused(error)
    # The client left mid-stream: its hold is replaced by what the call cost (Workers AI reported it).
    deadline = time.monotonic() + 5
    while ledger.held(key_id, now=time.time()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ledger.held(key_id, now=time.time()) == 0
    assert ledger.spent(key_id, now=time.time())[0] == pytest.approx(2 * C, rel=1e-9)
    status, error = post(served, "stream", stream=True)
    assert status == 429 and "has used its budget" in refused(error)
    group = usage_of(cli, served, "stream", requests=4)
    assert group["neurons"] == pytest.approx(2 * C, rel=1e-9) and group["errors"] == 2
