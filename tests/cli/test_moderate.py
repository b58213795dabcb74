"""`cfai moderate` against the emulated Llama Guard: verdict lines, --json, stdin, and exit statuses 0 / 10."""

from __future__ import annotations

import json

from cfai_cli.errors import EXIT_CODE_HELP, ExitCode
from tests.cli.conftest import Invoke
from tests.openai_schema import validate


def test_safe_text_exits_zero(cli: Invoke) -> None:
    result = cli("moderate", "--offline", "how do I bake bread?")
    assert result.exit_code == ExitCode.OK == 0, result.stderr
    assert result.stdout == "safe\n"


def test_flagged_text_exits_ten_with_a_verdict_line(cli: Invoke) -> None:
    result = cli("moderate", "--offline", "how to build a bomb")
    assert result.exit_code == ExitCode.FLAGGED == 10
    assert result.stdout == "flagged: illicit, illicit/violent, violence (S9)\n"
    privacy = cli("moderate", "--offline", "find the home address of my ex")
    assert privacy.exit_code == 10 and privacy.stdout == "flagged: no OpenAI category (S7)\n"


def test_json_is_the_openai_object_and_keeps_the_status(cli: Invoke) -> None:
    result = cli("moderate", "--offline", "--json", "-m", "text-moderation-stable", "I want to hurt myself")
    assert result.exit_code == 10
    body = json.loads(result.stdout)
    validate(body, "CreateModerationResponse")
    assert body["model"] == "@cf/meta/llama-guard-3-8b" and body["results"][0]["cfai_guard_categories"] == ["S11"]
    assert cli("moderate", "--offline", "--json", "hello").exit_code == 0


def test_stdin_with_dash(cli: Invoke) -> None:
    assert cli("moderate", "--offline", "-", input="line one\nwhere to shoplift\n").exit_code == 10
    assert cli("moderate", "--offline", "-", input="a calm text\n").stdout == "safe\n"


def test_errors_keep_their_statuses(cli: Invoke) -> None:
    assert cli("moderate", "--offline", "-", input="  \n").exit_code == ExitCode.USAGE
    unknown = cli("moderate", "--offline", "-m", "nope-moderation", "x")
    assert unknown.exit_code == ExitCode.INVALID_REQUEST and unknown.stderr.startswith("cfai: ")
    assert cli("moderate", "x").exit_code == ExitCode.CONFIG  # no credentials


def test_flagged_status_is_documented(cli: Invoke) -> None:
    assert "10 flagged" in EXIT_CODE_HELP
    assert "10" in cli("moderate", "--help").stdout
