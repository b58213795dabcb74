"""Forced tool calls written as JSON text are recovered; anything else is left alone."""

from __future__ import annotations

import json

import pytest

from cfai_cli.core.translate.salvage import salvage_tool_calls

NAMES = ["get_weather", "get_time"]


@pytest.mark.parametrize(("text", "expected"), [
    ('{"name": "get_weather", "arguments": {"city": "Paris"}}', [("get_weather", {"city": "Paris"})]),
    ('{"name": "get_weather", "arguments": "{\\"city\\": \\"Oslo\\"}"}', [("get_weather", {"city": "Oslo"})]),
    ('{"name": "get_weather", "city": "Rome"}', [("get_weather", {"city": "Rome"})]),
    ('{"name": "get_time", "parameters": {}}', [("get_time", {})]),
    ('[{"name": "get_weather", "arguments": {"city": "A"}}, {"name": "get_time", "arguments": {}}]',
     [("get_weather", {"city": "A"}), ("get_time", {})]),
    ('```json\n{"name": "get_time", "arguments": {}}\n```', [("get_time", {})]),
])
def test_salvaged(text: str, expected: list[tuple[str, dict[str, object]]]) -> None:
    calls = salvage_tool_calls(text, NAMES)
    assert [(c.name, json.loads(c.arguments)) for c in calls] == expected


@pytest.mark.parametrize("text", [
    None, "", "It is sunny.", '{"city": "Paris"}', '{"name": "unknown_tool", "arguments": {}}',
    '[{"name": "get_time"}, "x"]', "[]", '{"name": 3}',
])
def test_not_salvaged(text: str | None) -> None:
    assert salvage_tool_calls(text, NAMES) == []


def test_nothing_without_tools() -> None:
    assert salvage_tool_calls('{"name": "get_time", "arguments": {}}', []) == []


def test_forced_tool_call_written_as_text_becomes_a_tool_call() -> None:
    from cfai_cli.core.openai.chat import ChatCompletionRequest
    from cfai_cli.core.translate.chat import to_workers_chat
    from cfai_cli.core.translate.chat_answer import from_workers_chat
    from cfai_cli.core.workers.chat import parse_chat_result

    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    result = {"choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": '{"name": "get_weather", "arguments": {"city": "Paris"}}'}}]}

    def answer(tool_choice: object) -> dict[str, object]:
        req = ChatCompletionRequest.model_validate({
            "model": "gpt-5", "messages": [{"role": "user", "content": "weather?"}], "tools": [tool],
            "tool_choice": tool_choice})
        call = to_workers_chat(req, "@cf/openai/gpt-oss-120b", default_max_tokens=100, stream=False)
        return dict(from_workers_chat(req, call, [parse_chat_result(result)], completion_id="c", created=0,
                                      new_call_id=lambda: "call_1")["choices"][0])

    forced = answer("required")
    assert forced["finish_reason"] == "tool_calls"
    assert forced["message"]["content"] is None  # type: ignore[index]
    assert forced["message"]["tool_calls"][0]["function"]["name"] == "get_weather"  # type: ignore[index]
    assert json.loads(forced["message"]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}  # type: ignore[index]
    named = answer({"type": "function", "function": {"name": "get_weather"}})
    assert named["finish_reason"] == "tool_calls"
    # Not forced: a JSON answer stays an answer.
    auto = answer("auto")
    assert auto["finish_reason"] == "stop" and "tool_calls" not in auto["message"]  # type: ignore[operator]
