"""`cfai serve`: unsafe binds refused before anything listens, and one real start against the emulator."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.cli.conftest import Invoke


def test_no_auth_off_loopback_is_refused(cli: Invoke) -> None:
    result = cli("serve", "--offline", "--no-auth", "--host", "0.0.0.0")
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1].startswith("cfai: --no-auth is only allowed on a loopback address")


def test_without_keys_the_server_does_not_start(cli: Invoke) -> None:
    result = cli("serve", "--offline")
    assert result.exit_code == 3
    assert "cfai keygen" in result.stderr
    assert "OpenAI base URL" not in result.stderr


def test_without_credentials_the_server_does_not_start(cli: Invoke) -> None:
    result = cli("serve", "--no-auth")
    assert result.exit_code == 3
    assert "CLOUDFLARE_ACCOUNT_ID" in result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_offline_answers_over_http(cfai_home: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cfai_cli", "serve", "--offline", "--no-auth", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    health = json.loads(response.read())
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        assert health["offline"] is True
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions", method="POST",
            data=json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read())["object"] == "chat.completion"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0
    assert "OFFLINE" in err and f"http://127.0.0.1:{port}/v1" in err
