"""`cfai chat` end to end against the built-in emulator (--offline): stdout holds only the answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cfai_cli.cli.chat import build_body, combine_prompt
from cfai_cli.errors import ExitCode
from tests.cli.conftest import Invoke

REASONING_MODEL = "@cf/qwen/qwq-32b"
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def streamed_text(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])


def test_offline_answer_goes_to_stdout_and_the_warning_to_stderr(cli: Invoke) -> None:
    result = cli("chat", "--offline", "hello there")
    assert result.exit_code == 0
    assert result.stdout.startswith("[offline]") and result.stdout.endswith("You said: hello there\n")
    assert "OFFLINE" in result.stderr and "canned" in result.stderr
    assert "OFFLINE" not in result.stdout


def test_streamed_and_whole_answers_print_the_same_text(cli: Invoke) -> None:
    streamed = cli("chat", "--offline", "hello")
    whole = cli("chat", "--offline", "--no-stream", "hello")
    assert streamed.exit_code == whole.exit_code == 0
    assert streamed.stdout == whole.stdout


def test_json_no_stream_prints_the_exact_chat_completion(cli: Invoke) -> None:
    result = cli("chat", "--offline", "--no-stream", "--json", "-m", "gpt-4o-mini", "hi")
    assert result.exit_code == 0
    completion = json.loads(result.stdout)
    assert completion["object"] == "chat.completion"
    assert completion["id"].startswith("chatcmpl-")
    assert completion["model"] == "@cf/meta/llama-3.1-8b-instruct-fast"
    choice = completion["choices"][0]
    assert choice["message"]["role"] == "assistant" and "You said: hi" in choice["message"]["content"]
    assert choice["finish_reason"] == "stop"
    assert set(completion["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}


def test_json_stream_prints_one_chunk_per_line(cli: Invoke) -> None:
    result = cli("chat", "--offline", "--json", "hi")
    assert result.exit_code == 0
    chunks = ndjson(result.stdout)
    assert len(chunks) > 2
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert streamed_text(chunks).endswith("You said: hi")
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    # Requests built by the CLI ask for usage: the last chunk carries it, with no choices.
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0


def test_piped_stdin_follows_the_prompt(cli: Invoke) -> None:
    result = cli("chat", "--offline", "review this", input="diff --git a b\n")
    assert result.exit_code == 0
    assert result.stdout.rstrip().endswith("You said: review this diff --git a b")


def test_piped_stdin_alone_is_the_prompt(cli: Invoke) -> None:
    result = cli("chat", "--offline", input="just stdin\n")
    assert result.exit_code == 0
    assert result.stdout.rstrip().endswith("You said: just stdin")


def test_nothing_to_ask_is_a_usage_error(cli: Invoke) -> None:
    result = cli("chat", "--offline", input="")
    assert result.exit_code == ExitCode.USAGE
    assert result.stdout == ""


def test_reasoning_goes_to_stderr_never_stdout(cli: Invoke) -> None:
    for flags in ([], ["--no-stream"]):
        result = cli("chat", "--offline", "-m", REASONING_MODEL, *flags, "think")
        assert result.exit_code == 0
        assert result.stdout.startswith("[offline]") and result.stdout.endswith("You said: think\n")
        assert "offline emulator" in result.stderr  # the emulator's canned reasoning
        assert "offline emulator" not in result.stdout


def test_request_file_with_flags_laid_over_it(cli: Invoke, tmp_path: Path) -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "from the file"}], "temperature": 0.2}
    path = tmp_path / "req.json"
    path.write_text(json.dumps(body))
    result = cli("chat", "--offline", "--request", str(path), "--json", "-m", "gpt-4o-mini")
    assert result.exit_code == 0
    completion = json.loads(result.stdout)  # no "stream" in the body: one chat.completion, as OpenAI would
    assert completion["model"] == "@cf/meta/llama-3.1-8b-instruct-fast"
    assert completion["choices"][0]["message"]["content"].endswith("You said: from the file")


def test_request_from_stdin_streams_when_the_body_says_so(cli: Invoke) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "piped body"}], "stream": True}
    result = cli("chat", "--offline", "--request", "-", "--json", input=json.dumps(body))
    assert result.exit_code == 0
    chunks = ndjson(result.stdout)
    assert streamed_text(chunks).endswith("You said: piped body")
    assert all("usage" not in c or c["usage"] is None for c in chunks)  # the body did not ask for usage


def test_request_with_tools_prints_the_tool_call(cli: Invoke) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "weather in Paris?"}],
            "tools": [WEATHER_TOOL]}
    for stream in (False, True):
        result = cli("chat", "--offline", "--request", "-", input=json.dumps({**body, "stream": stream}))
        assert result.exit_code == 0
        assert result.stdout.startswith("tool call: get_weather({")
        assert result.stdout.count("\n") == 1


@pytest.mark.parametrize(("raw", "needle"), [
    ("{not json", "could not parse"),
    ("[1, 2]", "must be a JSON object"),
    ('{"model": "gpt-4o"}', "'messages'"),
    ('{"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', "temperature"),
])
def test_an_invalid_request_body_exits_4_with_one_line(cli: Invoke, raw: str, needle: str) -> None:
    result = cli("chat", "--offline", "--request", "-", input=raw)
    assert result.exit_code == ExitCode.INVALID_REQUEST
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if "OFFLINE" not in line]
    assert len(errors) == 1 and errors[0].startswith("cfai: --request -: ")
    assert needle in errors[0]


def test_a_missing_request_file_is_a_usage_error(cli: Invoke, tmp_path: Path) -> None:
    result = cli("chat", "--offline", "--request", str(tmp_path / "nope.json"))
    assert result.exit_code == ExitCode.USAGE


def test_an_unknown_model_alias_exits_4(cli: Invoke) -> None:
    result = cli("chat", "--offline", "-m", "gpt-17-ultra", "hi")
    assert result.exit_code == ExitCode.INVALID_REQUEST
    assert result.stdout == ""
    assert "gpt-17-ultra" in result.stderr


def test_out_of_range_flags_are_usage_errors(cli: Invoke) -> None:
    assert cli("chat", "--offline", "--temperature", "5", "hi").exit_code == ExitCode.USAGE
    assert cli("chat", "--offline", "--max-tokens", "0", "hi").exit_code == ExitCode.USAGE


# ---- building the request body (pure) -------------------------------------------------------------------

@pytest.mark.parametrize(("prompt", "piped", "expected"), [
    ("review this", "a\nb\n", "review this\n\na\nb"),
    ("just the prompt", None, "just the prompt"),
    (None, "only piped\n", "only piped"),
    ("prompt", "  \n", "prompt"),
    (None, None, None),
    ("", "", None),
])
def test_combine_prompt(prompt: str | None, piped: str | None, expected: str | None) -> None:
    assert combine_prompt(prompt, piped) == expected


FLAGS: dict[str, Any] = {"model": None, "system": None, "temperature": None, "max_tokens": None,
                         "no_stream": False, "json_out": False, "default_model": "@cf/default/model"}


@pytest.mark.parametrize(("base", "user_text", "flags", "expected"), [
    # from flags only
    (None, "hi", {}, {"model": "@cf/default/model", "messages": [{"role": "user", "content": "hi"}],
                      "stream": True, "stream_options": {"include_usage": True}}),
    (None, "hi", {"model": "gpt-4o", "system": "be brief", "temperature": 0.5, "max_tokens": 9, "no_stream": True},
     {"model": "gpt-4o", "stream": False, "temperature": 0.5, "max_tokens": 9,
      "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}),
    # a --request body: flags override, the prompt is appended, the body's own streaming choice is kept
    ({"messages": [{"role": "system", "content": "old"}, {"role": "user", "content": "q"}],
      "max_completion_tokens": 5},
     "more", {"system": "new", "max_tokens": 7},
     {"model": "@cf/default/model", "max_tokens": 7,
      "messages": [{"role": "system", "content": "new"}, {"role": "user", "content": "q"},
                   {"role": "user", "content": "more"}]}),
    ({"model": "m", "messages": [], "stream": True}, None, {"json_out": True},
     {"model": "m", "messages": [], "stream": True}),
    ({"model": "m", "messages": [], "stream": True}, None, {},
     {"model": "m", "messages": [], "stream": True, "stream_options": {"include_usage": True}}),
    ({"model": "m", "messages": [], "stream": True}, None, {"no_stream": True},
     {"model": "m", "messages": [], "stream": False}),
    ({"model": "m", "messages": "not a list"}, "hi", {}, {"model": "m", "messages": "not a list"}),
])
def test_build_body(base: dict[str, Any] | None, user_text: str | None, flags: dict[str, Any],
                    expected: dict[str, Any]) -> None:
    assert build_body(base=base, user_text=user_text, **{**FLAGS, **flags}) == expected


def test_an_interactive_session_accepts_a_route_and_refuses_an_unknown_model(cfai_home: Path) -> None:
    """Checked before the first prompt: aliases, ids and [routes] names pass; anything else fails at once."""
    import io

    import typer

    from cfai_cli.cli.chat import check_session
    from cfai_cli.cli.render import Terminal
    from cfai_cli.errors import ModelNotFound
    from cfai_cli.settings import load_settings

    (cfai_home / "config.toml").write_text('[routes]\nfast = ["@cf/meta/llama-3.1-8b-instruct-fast"]\n')
    settings = load_settings({"offline": True})
    tty = Terminal(stdout=io.StringIO(), stderr=io.StringIO(), stdin=io.StringIO(), environ={})
    tty.in_tty = True
    for name in ("fast", "gpt-4o", "@cf/meta/llama-3.1-8b-instruct-fast"):
        check_session(settings, tty, name)
    with pytest.raises(ModelNotFound):
        check_session(settings, tty, "no-such-model")
    tty.in_tty = False
    with pytest.raises(typer.BadParameter):
        check_session(settings, tty, "fast")


def test_a_request_with_an_image_gets_the_vision_alias_from_the_config(cli: Invoke) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    body = {"model": "gpt-5-2025-08-07", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is it?"}, image]}]}
    default = json.loads(cli("chat", "--offline", "--request", "-", "--json", input=json.dumps(body)).stdout)
    assert default["model"] == "@cf/google/gemma-4-26b-a4b-it"
    assert cli("config", "set", "vision_aliases.gpt-5", "@cf/meta/llama-4-scout-17b-16e-instruct").exit_code == 0
    pinned = json.loads(cli("chat", "--offline", "--request", "-", "--json", input=json.dumps(body)).stdout)
    assert pinned["model"] == "@cf/meta/llama-4-scout-17b-16e-instruct"
    text_only = {"model": "gpt-5-2025-08-07", "messages": [{"role": "user", "content": "hi"}]}
    plain = json.loads(cli("chat", "--offline", "--request", "-", "--json", input=json.dumps(text_only)).stdout)
    assert plain["model"] == "@cf/openai/gpt-oss-120b"
