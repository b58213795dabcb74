"""`cfai serve --workers N`: several processes answer on one port, each with the settings the command line
made (loaded again, nothing written for them), /metrics counts all of them, and the metrics directory they
share is private and removed when the server stops."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import free_port, stop_server, wait_for_health


def test_two_workers_answer_and_clean_up(cfai_home: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cfai_cli", "serve", "--offline", "--no-auth", "--port", str(port),
                             "--workers", "2", "--no-ui"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    try:
        wait_for_health(proc, port, seconds=30)
        # No settings (the token among them) are written for the workers: each loads them again.
        assert [p.name for p in cfai_home.rglob("*") if p.name.startswith(".serve-")] == []
        for _ in range(6):  # --no-ui holds in every worker, whichever answers
            with pytest.raises(urllib.error.HTTPError) as missing:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ui", timeout=10)
            assert missing.value.code == 404
            missing.value.close()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions", method="POST",
            data=json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode(),
            headers={"Content-Type": "application/json"})
        for _ in range(4):
            with urllib.request.urlopen(request, timeout=10) as response:
                assert json.loads(response.read())["object"] == "chat.completion"
                assert float(response.headers["x-cfai-overhead-ms"]) >= 0
        # Requests in parallel (so both workers take some, usually); every scrape, whichever worker takes it,
        # counts every worker's requests, from files in a directory only this user can enter.
        (metrics_dir,) = cfai_home.glob(".metrics-*")
        assert metrics_dir.stat().st_mode & 0o077 == 0

        def ask(_: int) -> int:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)

        with ThreadPoolExecutor(max_workers=8) as pool:
            assert set(pool.map(ask, range(36))) == {200}
        def scrape() -> dict[str, float]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
            return {s.labels["route"]: s.value for s in families["cfai_requests"].samples}

        # A request is counted just after its last byte is sent, so the client may be a moment ahead of the
        # count; wait (bounded) until the last one lands, then every scrape must agree.
        deadline = time.monotonic() + 5
        while scrape() != {"/v1/chat/completions": 40} and time.monotonic() < deadline:
            time.sleep(0.05)
        for _ in range(6):
            assert scrape() == {"/v1/chat/completions": 40}
    finally:
        _, err = stop_server(proc)
    assert proc.returncode == 0, err
    assert err.count("Started server process") == 2
    assert list(cfai_home.glob(".metrics-*")) == []
