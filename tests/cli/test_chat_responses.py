"""`cfai chat --responses` and `-c/--continue` against the emulator: the proxy's Responses path, from the CLI."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from cfai_cli.cli.render import Terminal
from cfai_cli.cli.respond import build_responses_body, responses_session
from cfai_cli.errors import ExitCode
from cfai_cli.settings import load_settings
from cfai_cli.store.responses import ResponseStore
from tests.cli.conftest import Invoke
from tests.openai_schema import validate, validate_response_events


def ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_responses_answer_goes_to_stdout(cli: Invoke) -> None:
    streamed = cli("chat", "--offline", "--responses", "hello there")
    whole = cli("chat", "--offline", "--responses", "--no-stream", "hello there")
    assert streamed.exit_code == whole.exit_code == 0
    assert streamed.stdout == whole.stdout
    assert streamed.stdout.startswith("[offline]") and streamed.stdout.endswith("You said: hello there\n")


def test_json_prints_the_response_or_its_events(cli: Invoke) -> None:
    whole = cli("chat", "--offline", "--responses", "--no-stream", "--json", "hi")
    validate(json.loads(whole.stdout), "Response")
    events = ndjson(cli("chat", "--offline", "--responses", "--json", "hi").stdout)
    validate_response_events(events)


def test_continue_picks_up_the_last_conversation(cli: Invoke, cfai_home: Path) -> None:
    first = json.loads(cli("chat", "--offline", "--responses", "--no-stream", "--json", "My name is Ada").stdout)
    second = json.loads(cli("chat", "--offline", "--responses", "-c", "--no-stream", "--json",
                            "What is my name?").stdout)
    third = ndjson(cli("chat", "--offline", "--responses", "--continue", "--json", "And again?").stdout)[-1]["response"]
    assert second["previous_response_id"] == first["id"]
    assert third["previous_response_id"] == second["id"]
    store = ResponseStore(cfai_home / "cfai.db")
    conversation = store.conversation(third["id"])
    assert conversation is not None
    said = [i["content"][0]["text"] for i in conversation if i["role"] == "user"]
    assert said == ["My name is Ada", "What is my name?", "And again?"]
    assert stat.S_IMODE(os.stat(cfai_home / "cfai.db").st_mode) == 0o600


def test_continue_without_a_conversation_exits_4(cli: Invoke) -> None:
    result = cli("chat", "--offline", "-c", "hi")
    assert result.exit_code == ExitCode.INVALID_REQUEST
    assert "no conversation to continue" in result.stderr
    assert result.stdout == ""


def test_request_body_in_responses_form(cli: Invoke) -> None:
    body = {"model": "@cf/zai-org/glm-4.7-flash", "input": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "name": "get_weather", "description": "Weather for a city",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                      "required": ["city"]}}],
            "tool_choice": "required"}
    result = cli("chat", "--offline", "--responses", "--request", "-", input=json.dumps(body))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("tool call: get_weather(")


@pytest.mark.parametrize(("flags", "expected"), [
    ({}, {"model": "m", "stream": True, "input": "hi"}),
    ({"system": "S", "temperature": 0.5, "max_tokens": 9, "no_stream": True, "previous": "resp_1"},
     {"model": "m", "stream": False, "input": "hi", "instructions": "S", "temperature": 0.5,
      "max_output_tokens": 9, "previous_response_id": "resp_1"}),
])
def test_build_responses_body(flags: dict[str, Any], expected: dict[str, Any]) -> None:
    args: dict[str, Any] = {"base": None, "user_text": "hi", "model": None, "system": None, "temperature": None,
                            "max_tokens": None, "no_stream": False, "previous": None, "default_model": "m"}
    assert build_responses_body(**{**args, **flags}) == expected


def test_interactive_session_chains_turns_and_reset_starts_over() -> None:
    settings = load_settings({"offline": True})
    out, err = io.StringIO(), io.StringIO()
    term = Terminal(stdout=out, stderr=err, stdin=io.StringIO("one\ntwo\n/reset\nthree\n/exit\n"), environ={})
    responses_session(settings, {"model": "gpt-4o-mini", "stream": False}, term, json_out=True)
    decoder, text, docs = json.JSONDecoder(), out.getvalue(), []
    while text.strip():
        doc, end = decoder.raw_decode(text.lstrip())
        docs.append(doc)
        text = text.lstrip()[end:]
    assert [d["previous_response_id"] for d in docs] == [None, docs[0]["id"], None]
    assert "over the Responses API" in err.getvalue()


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_a_stream_that_breaks_exits_with_the_upstream_status(cli: Invoke, extra: list[str]) -> None:
    result = cli("chat", "--offline", "--responses", "-m", "@cf/cfai/fault-stream-error", *extra, "hi")
    assert result.exit_code == ExitCode.UPSTREAM
    assert "cfai:" in result.stderr
    if extra:
        assert ndjson(result.stdout)[-1]["type"] == "response.failed"
