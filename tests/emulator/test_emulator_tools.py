"""The emulator's tool behaviour: `tool_choice` on native models (as Cloudflare's client sends it) and the
deterministic triggers that let tests drive a model that answers a forced call in text, writes it as JSON
text, cannot meet JSON mode, calls several tools at once, or calls a named tool with given arguments."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cfai_cli.emulator.content import ARGS, CALL, CALL_AS_TEXT, NO_JSON, PARALLEL, TEXT_INSTEAD
from tests.emulator.test_emulator import GLM, LLAMA, SCOUT, TIME, WEATHER, error, events, post, result, user

pytestmark = pytest.mark.anyio


def native(text: str, **fields: Any) -> dict[str, Any]:
    return {"messages": user(text), "tools": [WEATHER, TIME], **fields}


@pytest.mark.parametrize(("choice", "called"), [
    (None, ["get_weather"]), ("auto", ["get_weather"]), ("required", ["get_weather"]), ("none", []),
    ({"type": "function", "function": {"name": "get_time"}}, ["get_time"]),
])
async def test_native_models_take_tool_choice(choice: Any, called: list[str]) -> None:
    body = native("Weather?") if choice is None else native("Weather?", tool_choice=choice)
    answer = result(await post(LLAMA, body))
    assert [c["name"] for c in answer["tool_calls"]] == called
    assert (answer["response"] is None) == bool(called)


async def test_text_instead_of_a_forced_call_on_native_models_only() -> None:
    answer = result(await post(LLAMA, native(f"Weather? {TEXT_INSTEAD}", tool_choice="required")))
    assert answer["tool_calls"] == [] and "offline" in answer["response"]
    streamed = events(await post(SCOUT, native(f"Weather? {TEXT_INSTEAD}", tool_choice="required", stream=True)))
    assert not any(e.get("tool_calls") for e in streamed)
    # A vLLM-served model honours a forced choice server-side.
    chat = result(await post(GLM, native(f"Weather? {TEXT_INSTEAD}", tool_choice="required")))
    assert chat["choices"][0]["message"]["tool_calls"]


async def test_call_written_as_json_text() -> None:
    answer = result(await post(LLAMA, native(f"Weather? {CALL_AS_TEXT}", tool_choice="required")))
    assert answer["tool_calls"] == []
    written = json.loads(answer["response"])
    assert written["name"] == "get_weather" and written["arguments"]["location"] == "London"


async def test_json_mode_that_cannot_be_met() -> None:
    fmt = {"type": "json_schema", "json_schema": {"type": "object", "properties": {"a": {"type": "string"}}}}
    message = error(await post(LLAMA, {"messages": user(f"x {NO_JSON}"), "response_format": fmt}), 400, 5006)
    assert "JSON Mode couldn't be met" in message
    assert result(await post(LLAMA, {"messages": user("x"), "response_format": fmt}))["response"] == {"a": "example"}
    chat = result(await post(GLM, {"messages": user(f"x {NO_JSON}"), "response_format": {"type": "json_object"}}))
    assert "offline" in chat["choices"][0]["message"]["content"]  # plain text, not JSON


async def test_parallel_calls_and_parallel_tool_calls_false() -> None:
    answer = result(await post(LLAMA, native(f"Weather and time? {PARALLEL}")))
    assert [c["name"] for c in answer["tool_calls"]] == ["get_weather", "get_time"]
    chat = result(await post(GLM, native(f"Weather and time? {PARALLEL}")))["choices"][0]["message"]
    assert [c["function"]["name"] for c in chat["tool_calls"]] == ["get_weather", "get_time"]
    assert len({c["id"] for c in chat["tool_calls"]}) == 2
    single = result(await post(GLM, native(f"x {PARALLEL}", parallel_tool_calls=False)))["choices"][0]["message"]
    assert [c["function"]["name"] for c in single["tool_calls"]] == ["get_weather"]
    streamed = events(await post(GLM, native(f"x {PARALLEL}", stream=True)))
    indexes = {t["index"] for e in streamed for c in e.get("choices", []) for t in c["delta"].get("tool_calls", [])}
    assert indexes == {0, 1}


async def test_call_and_args_triggers_drive_one_named_call() -> None:
    ns_time = {"type": "function", "function": {**TIME["function"], "name": "clock__get_time"}}
    said = f'What time? {CALL}get_time] {ARGS}{{"zone": "[UTC]", "n": 2}}]'
    for model in (LLAMA, GLM):
        answer = result(await post(model, native(said)))
        calls = answer.get("tool_calls") or answer["choices"][0]["message"]["tool_calls"]
        names = [c.get("name") or c["function"]["name"] for c in calls]
        args = [c.get("arguments") or json.loads(c["function"]["arguments"]) for c in calls]
        assert names == ["get_time"] and args == [{"zone": "[UTC]", "n": 2}], model
    # a flat namespaced name is found by its inner name; arguments alone keep the first tool
    answer = result(await post(LLAMA, {"messages": user(f"x {CALL}get_time]"), "tools": [WEATHER, ns_time]}))
    assert [c["name"] for c in answer["tool_calls"]] == ["clock__get_time"]
    answer = result(await post(LLAMA, native(f'x {ARGS}{{"location": "Oslo"}}]')))
    assert answer["tool_calls"][0] == {"name": "get_weather", "arguments": {"location": "Oslo"}}
    # a named tool_choice wins over the trigger; an unknown name or bad JSON changes nothing
    named = {"type": "function", "function": {"name": "get_weather"}}
    answer = result(await post(LLAMA, native(f"x {CALL}get_time]", tool_choice=named)))
    assert [c["name"] for c in answer["tool_calls"]] == ["get_weather"]
    answer = result(await post(LLAMA, native(f"x {CALL}nope] {ARGS}{{bad]")))
    assert answer["tool_calls"][0]["name"] == "get_weather"
    assert answer["tool_calls"][0]["arguments"]["location"] == "London"


async def test_a_system_note_after_the_users_turn_still_leaves_the_turn_to_the_user() -> None:
    """Claude Code sends a system turn (its environment notes) after the user's message: the model still
    answers the user, tools included; a system prompt alone is no turn of the user's."""
    note = [*user("Weather?"), {"role": "system", "content": "The working directory is /tmp."}]
    answer = result(await post(LLAMA, {"messages": note, "tools": [WEATHER, TIME]}))
    assert [c["name"] for c in answer["tool_calls"]] == ["get_weather"]
    alone = result(await post(LLAMA, {"messages": [{"role": "system", "content": "Hi"}], "tools": [WEATHER]}))
    assert alone["tool_calls"] == []
