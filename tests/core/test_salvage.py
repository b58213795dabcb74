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
