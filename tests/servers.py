"""Helpers for tests that start a real `cfai serve` process: a free port, and waiting until it answers."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.request
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_health(proc: subprocess.Popen[str], port: int, *, seconds: float = 20.0) -> dict[str, Any]:
    """The server's /health answer once it gives one; fails with its stderr if it exits, or after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                return dict(json.loads(response.read()))
        except OSError:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)


def stop_server(proc: subprocess.Popen[str], *, timeout: float = 20.0) -> tuple[str, str]:
    """Stop a `cfai serve` process as Ctrl-C does (killed if it will not stop); its (stdout, stderr)."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()
