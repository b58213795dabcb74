"""The README's quick-use snippets actually work: the Python SDK and curl examples run against a real
`cfai serve --offline` started the way the README says, with a key from `cfai keygen`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port, wait_for_health

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def block(after: str, language: str) -> str:
    """The first fenced code block of `language` after the heading `after`."""
    tail = README[README.index(after):]
    match = re.search(rf"```{language}\n(.*?)```", tail, re.S)
    assert match, f"no {language} block after {after!r}"
    return match.group(1)


@pytest.fixture
def server(cfai_home: Path) -> Iterator[tuple[int, str, dict[str, str]]]:
    port = free_port()
    env = dict(os.environ)
    key = subprocess.run([sys.executable, "-m", "cfai_cli", "keygen"], capture_output=True, text=True, env=env,
                         check=True).stdout.strip()
    proc = subprocess.Popen([sys.executable, "-m", "cfai_cli", "serve", "--offline", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    wait_for_health(proc, port)
    try:
        yield port, key, {**env, "KEY": key}
    finally:
        proc.terminate()
        proc.communicate(timeout=15)  # reaps it and closes its stderr pipe


def test_python_sdk_snippet(server: tuple[int, str, dict[str, str]]) -> None:
    port, _, env = server
    code = block("### From the OpenAI Python SDK", "python").replace("127.0.0.1:3000", f"127.0.0.1:{port}")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("[offline]") and lines[-1] == "768"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_snippet(server: tuple[int, str, dict[str, str]]) -> None:
    port, _, env = server
    command = block("### From curl", "bash").replace("127.0.0.1:3000", f"127.0.0.1:{port}")
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("data: {") and done.stdout.rstrip().endswith("data: [DONE]")


def test_routing_config_example_is_valid() -> None:
    """The README's [upstreams]/[routes] example parses, and means what the text around it says."""
    import tomllib

    from cfai_cli.core.routing import Target, parse_routing

    config = parse_routing(tomllib.loads(block("## Routing and failover", "toml")), source="README.md")
    assert [(u.name, u.kind, len(u.credentials)) for u in config.upstreams] == [("backup", "cloudflare", 2),
                                                                                ("groq", "openai", 1)]
    assert config.routes["fast"][1] == Target("groq", "llama-3.1-8b-instant")
    assert config.policy("groq")[1] == 120 and config.policy("backup")[1] == 30


def test_every_curl_example_that_sends_json_says_so() -> None:
    """The proxy answers a body without `Content-Type: application/json` with a 415 (curl -d alone sends a
    form type), so every README example that posts JSON must send the header."""
    commands = re.findall(r"curl [^\n]*", README.replace("\\\n", " "))  # continuation lines joined
    posting = [c for c in commands if re.search(r"\s(-d|--data\S*)\s", c)]
    assert posting, "no curl example posts a body"
    for command in posting:
        assert re.search(r"-H\s+['\"]Content-Type: application/json['\"]", command, re.I), command
