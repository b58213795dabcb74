"""JavaScript clients against a live `cfai serve --offline`: the Anthropic TypeScript SDK and Claude Code headless
(`claude -p`), including its tool loop. NEEDS NODE PACKAGES: these tests skip unless `tests/js/node_modules`
exists (`npm ci --prefix tests/js`, which .ci/run does); the versions are pinned in tests/js/package.json.

Claude Code runs with HOME in a temporary directory, `ANTHROPIC_BASE_URL` at the proxy and a cfai key as
`ANTHROPIC_API_KEY`, sending its default model name (a Claude name cfai maps by family, core.catalog).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import free_port, stop_server, wait_for_health

JS = Path(__file__).resolve().parents[1] / "js"
CLAUDE = JS / "node_modules" / ".bin" / "claude"

pytestmark = pytest.mark.skipif(not (JS / "node_modules").is_dir() or shutil.which("node") is None,
                                reason="needs node and tests/js/node_modules (npm ci --prefix tests/js)")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(base URL, key) of a `cfai serve --offline` subprocess with keys on, shared by this module's tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDFLARE_", "CFAI_", "ANTHROPIC_"))}
    env["CFAI_HOME"] = str(tmp_path_factory.mktemp("cfai-js-home"))
    key = subprocess.run([sys.executable, "-m", "cfai_cli", "keygen"], capture_output=True, text=True, env=env,
                         check=True, timeout=30).stdout.strip()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cfai_cli", "serve", "--offline", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for_health(proc, port)
        yield f"http://127.0.0.1:{port}", key
    finally:
        stop_server(proc)


def test_typescript_sdk(served: tuple[str, str]) -> None:
    url, key = served
    done = subprocess.run(["node", str(JS / "anthropic_sdk.mjs")], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "CFAI_URL": url, "CFAI_KEY": key}, cwd=JS)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["plain"]["id"].startswith("msg_") and out["plain"]["model"] == "claude-sonnet-4-5"
    assert "You said: Hello from TypeScript" in out["plain"]["text"] and out["plain"]["stop_reason"] == "end_turn"
    assert out["stopped"]["stop_reason"] == "stop_sequence" and out["stopped"]["stop_sequence"] == "canned"
    assert out["stopped"]["text"].endswith("this ") and "canned" not in out["stopped"]["text"]
    tools = out["tools"]
    assert tools["stop_reason"] == "tool_use" and tools["call"]["name"] == "get_weather"
    assert tools["call"]["id"].startswith("toolu_") and tools["call"]["input"] == {"city": "Paris"}
    assert "get_weather returned: 18 C and sunny" in tools["final"] and tools["final_stop"] == "end_turn"
    assert out["count"] > 0 and out["models"] == ["model"] * 3
    assert out["auth"] == {"authError": True, "status": 401, "type": "authentication_error"}


def claude_code(served: tuple[str, str], prompt: str, workdir: Path, *extra: str) -> dict[str, Any]:
    url, key = served
    home = workdir.parent / f"{workdir.name}-home"
    home.mkdir()
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "ANTHROPIC_BASE_URL": url,
           "ANTHROPIC_API_KEY": key, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
           "DISABLE_AUTOUPDATER": "1"}
    done = subprocess.run([str(CLAUDE), "-p", prompt, "--output-format", "json", *extra], capture_output=True,
                          text=True, timeout=60, env=env, cwd=workdir)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_claude_code_answers(served: tuple[str, str], tmp_path: Path) -> None:
    work = tmp_path / "plain"
    work.mkdir()
    result = claude_code(served, "Say hello", work)
    assert result["is_error"] is False and result["subtype"] == "success"
    assert result["result"].startswith("[offline] cfai's built-in emulator")
    # Claude Code's default model (a Claude name cfai maps by family) is what it reports having used.
    assert all(name.startswith("claude-") for name in result["modelUsage"])


def test_claude_code_tool_loop(served: tuple[str, str], tmp_path: Path) -> None:
    """The emulator calls Claude Code's Bash tool; Claude Code runs it, sends the result, gets the answer."""
    work = tmp_path / "tools"
    work.mkdir()
    command = "echo cfai-tool-ran > proof.txt && echo written"
    args = json.dumps({"command": command, "description": "Write the proof file"})
    result = claude_code(served, f"Write the proof file. [emulator:call=Bash] [emulator:args={args}]", work,
                         "--allowedTools", "Bash")
    assert (work / "proof.txt").read_text() == "cfai-tool-ran\n"  # the tool really ran
    assert result["is_error"] is False and result["num_turns"] == 2
    assert "The tool Bash returned: written" in result["result"]  # the second turn's answer, quoting it
