"""`cfai serve --workers N`: several processes answer on one port, and the settings file they share is removed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.servers import free_port, wait_for_health


def test_two_workers_answer_and_clean_up(cfai_home: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cfai_cli", "serve", "--offline", "--no-auth", "--port", str(port),
                             "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    try:
        wait_for_health(proc, port, seconds=30)
        # The workers' settings travel in a file only this user may read.
        (state,) = cfai_home.rglob(".serve-*.state")
        assert state.stat().st_mode & 0o077 == 0
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions", method="POST",
            data=json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode(),
            headers={"Content-Type": "application/json"})
        for _ in range(4):
            with urllib.request.urlopen(request, timeout=10) as response:
                assert json.loads(response.read())["object"] == "chat.completion"
                assert float(response.headers["x-cfai-overhead-ms"]) >= 0
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0, err
    assert err.count("Started server process") == 2
    assert list(cfai_home.rglob(".serve-*.state")) == []
