"""`cfai tokens`: local counts with no credentials, stdin, --json (the proxy's object), errors and statuses."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from cfai_cli.cli.render import OutputOptions
from cfai_cli.cli.tokens import tokens
from cfai_cli.core.tokens import estimate_tokens
from tests.cli.conftest import Invoke

QWEN = "@cf/qwen/qwen3-30b-a3b-fp8"


def test_piped_it_prints_just_the_number_with_no_credentials(cli: Invoke) -> None:
    result = cli("tokens", "Hello, world! 12345", "-m", QWEN)  # the autouse fixture cleared CLOUDFLARE_*
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "7\n" and result.stderr == ""


def test_json_is_the_proxy_object(cli: Invoke) -> None:
    result = cli("tokens", "--json", "-m", "gpt-4o", "Hello world")
    body = json.loads(result.stdout)
    assert body["object"] == "tokenize" and body["model"] == "@cf/meta/llama-4-scout-17b-16e-instruct"
    assert body["total_tokens"] == 2 and body["counts"] == [2]
    assert body["method"] in ("estimate", "exact") and body["note"]


@pytest.mark.parametrize("args", [["-"], []])
def test_stdin_is_read_when_text_is_dash_or_missing(cli: Invoke, args: list[str]) -> None:
    text = "line one\n人工智能\n"
    result = cli("tokens", "-m", QWEN, *args, input=text)
    assert result.exit_code == 0, result.stderr
    assert int(result.stdout) == estimate_tokens(text) > 0


def test_empty_stdin_is_zero(cli: Invoke) -> None:
    result = cli("tokens", "-m", QWEN, input="")
    assert result.exit_code == 0 and result.stdout == "0\n"


def test_the_default_model_is_the_chat_default(cli: Invoke) -> None:
    body = json.loads(cli("tokens", "--json", "x").stdout)
    assert body["model"] == "@cf/meta/llama-3.3-70b-instruct-fp8-fast"


def test_a_configured_alias_resolves(cli: Invoke) -> None:
    assert cli("config", "set", "aliases.house", QWEN).exit_code == 0
    body = json.loads(cli("tokens", "--json", "-m", "house", "x").stdout)
    assert body["model"] == QWEN


def test_unknown_and_invalid_models_exit_4(cli: Invoke) -> None:
    unknown = cli("tokens", "-m", "gtp-4o-mini", "x")
    assert unknown.exit_code == 4 and "gpt-4o-mini" in unknown.stderr and unknown.stdout == ""
    invalid = cli("tokens", "-m", "@cf/../x", "x")
    assert invalid.exit_code == 4 and invalid.stderr.startswith("cfai: Invalid model id")


class _TTY:
    """A stream that says it is a terminal."""

    def __init__(self, text: str = "") -> None:
        self.parts: list[str] = []
        self.text = text

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def read(self) -> str:
        return self.text


COMMAND: Any = SimpleNamespace(obj=OutputOptions())  # what cfai's root callback leaves on the Typer context


def test_on_a_terminal_it_prints_a_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _TTY()
    monkeypatch.setattr(sys, "stdout", out)
    tokens(COMMAND, "Hello world", model=QWEN, json_out=False)
    assert "".join(out.parts) == f"2 tokens (estimate) for {QWEN}\n"


def test_with_a_terminal_on_stdin_and_no_text_it_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import typer

    monkeypatch.setattr(sys, "stdin", _TTY())
    with pytest.raises(typer.BadParameter):
        tokens(COMMAND, None, model=QWEN, json_out=False)


def test_help_has_an_example(cli: Invoke) -> None:
    result = cli("tokens", "--help")
    assert result.exit_code == 0 and "Example" in result.stdout and "estimate" in result.stdout


def test_help_does_not_import_the_heavy_modules() -> None:
    probe = ("import sys\nsys.argv = ['cfai', 'tokens', '--help']\nfrom cfai_cli.cli.app import main\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "sys.stderr.write('LOADED:' + ','.join(sorted(m for m, v in sys.modules.items() if v and m.startswith("
             "('httpx', 'starlette', 'uvicorn', 'rich', 'cfai_cli.service', 'cfai_cli.core.tokens')))))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stderr.rsplit("LOADED:", 1)[1] == ""
