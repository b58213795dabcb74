"""The README and docs/ mean what they say: the Python SDK and curl examples run against a real
`cfai serve --offline` started the way the README says, with a key from `cfai keygen`; the routing example
parses; every relative link and `#anchor` across README.md and docs/*.md leads somewhere."""

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

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
# The README is the front door; the long references live in docs/ (each linked from a README section).
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
QUICK_START = [
    "python3 -m venv .venv && . .venv/bin/activate && pip install '.[test]' && cfai chat --offline \"hello\"",
    "python -m pytest --cov",
]


def doc(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def block(after: str, language: str, text: str = README) -> str:
    """The first fenced code block of `language` after the heading `after` in `text` (the README by default)."""
    tail = text[text.index(after):]
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


def test_anthropic_python_sdk_snippet(server: tuple[int, str, dict[str, str]]) -> None:
    port, _, env = server
    code = block("### From the Anthropic SDK", "python").replace("127.0.0.1:3000", f"127.0.0.1:{port}")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("[offline]") and "llama-4-scout" in lines[0]
    assert lines[1].startswith("[offline]") and "mistral-small" in lines[1]
    assert int(lines[-1]) > 0


JS = ROOT / "tests" / "js"


@pytest.mark.skipif(not (JS / "node_modules").is_dir() or shutil.which("node") is None,
                    reason="needs node and tests/js/node_modules (npm ci --prefix tests/js)")
def test_anthropic_typescript_snippet(server: tuple[int, str, dict[str, str]]) -> None:
    port, _, env = server
    code = block("### From the Anthropic SDK", "typescript").replace("127.0.0.1:3000", f"127.0.0.1:{port}")
    # Run as an ES module from tests/js, where `@anthropic-ai/sdk` resolves.
    done = subprocess.run(["node", "--input-type=module", "-e", code], capture_output=True, text=True, env=env,
                          timeout=60, cwd=JS)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("[offline]") and "llama-4-scout" in done.stdout


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_snippet(server: tuple[int, str, dict[str, str]]) -> None:
    port, _, env = server
    command = block("### From curl", "bash").replace("127.0.0.1:3000", f"127.0.0.1:{port}")
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("data: {") and done.stdout.rstrip().endswith("data: [DONE]")


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("jq") is None, reason="needs curl and jq")
def test_admin_api_snippet(server: tuple[int, str, dict[str, str]], tmp_path: Path) -> None:
    """docs/admin.md's walk through the admin API, run as written (cfai is this checkout's)."""
    port, _, env = server
    command = block("## Try it", "bash", doc("docs/admin.md")).replace("127.0.0.1:3000", f"127.0.0.1:{port}")
    command = command.replace("$(cfai ", f"$({sys.executable} -m cfai_cli ")
    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", command], capture_output=True, text=True, env=env,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sorted(lines[:3]) == ["admin", "ci", "default"]  # the keys by name: the fixture's, the two made here
    assert '"rpm":60' in lines[3] and lines[4] == '{"rpm":null,"tpm":20000}'
    assert any('"group":"key_' in line for line in lines[5:-1])
    assert any(line.startswith('{"label":"admin') and '"neurons":' in line for line in lines[5:-1])  # by name
    assert re.fullmatch(r'\{"id":"key_[0-9a-f]{16}","deleted":true\}', lines[-1])
    assert not (tmp_path / "ci.json").exists()


def test_routing_config_example_is_valid() -> None:
    """docs/routing.md's [upstreams]/[routes] example parses, and means what the text around it says."""
    import tomllib

    from cfai_cli.core.config_file import parse_routing
    from cfai_cli.core.routing import Target

    example = block("# Routing and failover", "toml", doc("docs/routing.md"))
    config = parse_routing(tomllib.loads(example), source="docs/routing.md")
    assert [(u.name, u.kind, len(u.credentials)) for u in config.upstreams] == [
        ("backup", "cloudflare", 2), ("groq", "openai", 1), ("anthropic", "anthropic", 1), ("gemini", "openai", 1)]
    assert config.routes["fast"][1] == Target("groq", "llama-3.1-8b-instant")
    assert config.routes["smart"] == ("@cf/meta/llama-3.3-70b-instruct-fp8-fast",
                                      Target("anthropic", "claude-sonnet-4-5"))
    gemini = config.upstream("gemini")
    assert gemini is not None and gemini.base_url == "https://generativelanguage.googleapis.com/v1beta/openai"
    assert config.policy("groq")[1] == 120 and config.policy("backup")[1] == 30


def test_every_curl_example_that_sends_json_says_so() -> None:
    """The proxy answers a body without `Content-Type: application/json` with a 415 (curl -d alone sends a
    form type), so every example in the README and docs/ that posts JSON must send the header."""
    text = "\n".join(path.read_text(encoding="utf-8") for path in DOCS)
    commands = re.findall(r"curl [^\n]*", text.replace("\\\n", " "))  # continuation lines joined
    posting = [c for c in commands if re.search(r"\s(-d|--data\S*)\s", c)]
    assert len(posting) > 1, "no curl example posts a body"
    for command in posting:
        assert re.search(r"-H\s+['\"]Content-Type: application/json['\"]", command, re.I), command


def test_the_quick_start_keeps_its_two_commands() -> None:
    quick_start = README[README.index("## Quick start"):README.index("\n## ", README.index("## Quick start") + 1)]
    blocks = re.findall(r"```bash\n(.*?)\n```", quick_start, re.S)
    assert blocks[:2] == QUICK_START
    ci = (ROOT / ".ci" / "run").read_text()
    assert QUICK_START[1] in ci.splitlines()  # CI runs exactly the README's test command


def test_the_readme_links_every_doc() -> None:
    linked = {ROOT / target for target in re.findall(r"\]\((docs/[^)#]+)", README)}
    assert {path for path in DOCS if path.parent.name == "docs"} <= linked


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def outside_code(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def anchors(text: str) -> set[str]:
    """Every heading anchor of a markdown text (a repeated heading gets -1, -2, ... as on GitHub)."""
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+)$", outside_code(text), re.M):
        base = name = slug(heading)
        n = 0
        while name in found:
            n += 1
            name = f"{base}-{n}"
        found.add(name)
    return found


def broken_links(paths: list[Path]) -> list[str]:
    """Relative links whose file does not exist, or whose `#anchor` is no heading of the file it names."""
    broken: list[str] = []
    for path in paths:
        for target in re.findall(r"\]\(([^)\s]+)\)", outside_code(path.read_text(encoding="utf-8"))):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
                continue
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            if not linked.exists():
                broken.append(f"{path.name}: {target} (no such file)")
            elif anchor and (linked.suffix != ".md" or anchor not in anchors(linked.read_text(encoding="utf-8"))):
                broken.append(f"{path.name}: {target} (no such heading)")
    return broken


def test_every_relative_link_and_anchor_resolves() -> None:
    links = [t for p in DOCS for t in re.findall(r"\]\(([^)\s:]+)\)", outside_code(p.read_text(encoding="utf-8")))]
    assert len(links) > 20 and any("#" in t for t in links), links  # the check reads real links
    assert broken_links(DOCS) == []


def test_the_link_check_catches_a_broken_link_or_anchor(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A doc\n\n## Same\n\n## Same\n", encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text("# Top\n\n[ok](docs/a.md#same-1) [ok](#top) [web](https://x.invalid/#nope)\n"
                      "[gone](docs/b.md) [bad](docs/a.md#same-2) [bad](#nowhere)\n"
                      "```\n[in code](docs/none.md)\n```\n", encoding="utf-8")
    assert broken_links([readme]) == ["README.md: docs/b.md (no such file)",
                                      "README.md: docs/a.md#same-2 (no such heading)",
                                      "README.md: #nowhere (no such heading)"]


def test_proxy_snippets_run_as_pasted() -> None:
    """The key the client snippets read is exported, a Node snippet says it is an ES module, and a user install
    sits beside the developer quick start."""
    setup = block("## The proxy", "bash")
    assert re.search(r"^export KEY=\$\(cfai keygen", setup, re.M), setup
    assert 'os.environ["KEY"]' in block("### From the OpenAI Python SDK", "python")
    for code in (block("### From the Anthropic SDK", "typescript"), block("## From the OpenAI Node SDK", "js",
                                                                           doc("docs/proxy.md"))):
        assert ".mjs" in code and '"type": "module"' in code and "process.env.KEY" in code
    assert 'os.environ["KEY"]' in block("## From LangChain", "python", doc("docs/proxy.md"))
    quick_start = README[README.index("## Quick start"):README.index("## The proxy")]
    assert "`pipx install .`" in quick_start and "`uv tool install .`" in quick_start
