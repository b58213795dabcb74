"""Agents' tool sets on the Responses API, as tables: custom, namespace and hosted tools in the request, their
history items into chat messages, and the calls back out as `custom_tool_call` / namespaced `function_call`
items and events (validated against the OpenAI schemas)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.chat import ChatCompletionChunk
from cfai_cli.core.openai.responses import CreateResponseRequest
from cfai_cli.core.translate.responses import input_items, response_shell, response_tools, to_chat_request
from cfai_cli.core.translate.responses_items import resolve_references
from cfai_cli.core.translate.responses_stream import ResponseBuilder
from cfai_cli.errors import InvalidRequest
from tests.core.helpers import counting_ids
from tests.openai_schema import validate, validate_response_events

CODEX_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "codex"
CODEX_DEFAULT = json.loads((CODEX_FIXTURES / "default_request.json").read_text())  # real, Codex 0.171.0
CODEX_GPT55 = json.loads((CODEX_FIXTURES / "gpt-5.5_request.json").read_text())
PARAMS = {"type": "object", "properties": {"q": {"type": "string"}}}
TOOLS = [
    {"type": "function", "name": "shell", "parameters": PARAMS},
    {"type": "custom", "name": "apply_patch", "description": "Edit files.",
     "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}},
    {"type": "namespace", "name": "crm", "description": "CRM tools", "tools": [
        {"type": "function", "name": "lookup", "parameters": PARAMS}, {"type": "custom", "name": "note"}]},
    {"type": "web_search"}, {"type": "mcp", "server_label": "deepwiki", "server_url": "https://example.com/mcp"},
]


def req(**fields: Any) -> CreateResponseRequest:
    return validate_request(CreateResponseRequest, {"model": "gpt-4o", **fields})


def chat_body(r: CreateResponseRequest) -> dict[str, Any]:
    items = input_items(r.raw_input(), counting_ids())
    return to_chat_request(r, [], items, model="m", stream=False).model_dump(exclude_none=True, by_alias=True)


def test_the_chat_request_offers_flat_function_tools_only() -> None:
    body = chat_body(req(input="x", tools=TOOLS, tool_choice={"type": "custom", "name": "note"}))
    assert [t["function"]["name"] for t in body["tools"]] == ["shell", "apply_patch", "crm__lookup", "crm__note"]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "crm__note"}}
    assert response_tools(req(input="x", tools=TOOLS)).dropped == ["web_search", "mcp"]


@pytest.mark.parametrize(("choice", "expected"), [
    ({"type": "web_search_preview"}, "auto"),  # its tool is dropped: the model decides
    ({"type": "mcp", "server_label": "deepwiki"}, "auto"),
    ({"type": "function", "name": "lookup"}, {"type": "function", "function": {"name": "crm__lookup"}}),
    ({"type": "allowed_tools", "mode": "required", "tools": [{"type": "custom", "name": "apply_patch"}]},
     {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
         {"type": "function", "function": {"name": "apply_patch"}}]}}),
])
def test_tool_choice_names_flat_tools(choice: Any, expected: Any) -> None:
    assert chat_body(req(input="x", tools=TOOLS, tool_choice=choice))["tool_choice"] == expected


HISTORY = [
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Fix the bug"}]},
    {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Look first."}], "encrypted_content": None},
    {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search", "query": "bug"}},
    {"type": "function_call", "call_id": "c1", "name": "lookup", "namespace": "crm", "arguments": '{"q": "x"}'},
    {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": "*** Begin Patch\n"},
    {"type": "function_call_output", "call_id": "c1", "output": "found"},
    {"type": "custom_tool_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "applied"}]},
    {"type": "local_shell_call", "id": "lsh_1", "call_id": "c3", "status": "completed",
     "action": {"type": "exec", "command": ["ls"], "env": {}}},
    {"type": "local_shell_call_output", "id": "c3", "output": "README.md"},
]


def test_history_items_become_chat_messages_under_flat_names() -> None:
    body = chat_body(req(input=HISTORY, tools=TOOLS))
    assert body["messages"] == [
        {"role": "user", "content": "Fix the bug"},
        {"role": "assistant", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "crm__lookup", "arguments": '{"q": "x"}'}},
            {"id": "c2", "type": "function", "function": {"name": "apply_patch",
                                                           "arguments": '{"input": "*** Begin Patch\\n"}'}}]},
        {"role": "tool", "content": "found", "tool_call_id": "c1"},
        {"role": "tool", "content": "applied", "tool_call_id": "c2"},
        {"role": "assistant", "tool_calls": [
            {"id": "c3", "type": "function", "function": {
                "name": "local_shell", "arguments": '{"type": "exec", "command": ["ls"], "env": {}}'}}]},
        {"role": "tool", "content": "README.md", "tool_call_id": "c3"},
    ]


def test_history_items_are_kept_as_given_with_ids() -> None:
    items = input_items(HISTORY, counting_ids())
    assert [i["type"] for i in items] == [h["type"] for h in HISTORY]
    assert all(i["id"] for i in items)
    custom = items[4]
    assert custom == {"type": "custom_tool_call", "id": "ctc_1", "call_id": "c2", "name": "apply_patch",
                      "input": "*** Begin Patch\n", "status": "completed"}
    assert items[3]["namespace"] == "crm"
    validate(custom, "CustomToolCallResource")
    validate(items[6], "CustomToolCallOutputResource")
    validate(items[3], "FunctionToolCallResource")


def chunk(delta: dict[str, Any], finish: str | None = None) -> ChatCompletionChunk:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",  # type: ignore[typeddict-item]
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


def call(index: int, call_id: str, name: str, arguments: str) -> list[ChatCompletionChunk]:
    half = len(arguments) // 2
    return [chunk({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                   "function": {"name": name, "arguments": arguments[:half]}}]}),
            chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments[half:]}}]})]


def test_calls_come_back_as_the_client_defined_its_tools() -> None:
    r = req(input="x", tools=TOOLS)
    shell = response_shell(r, response_id="resp_1", created_at=1, model="@cf/m/x")
    builder = ResponseBuilder(shell, new_id=counting_ids(), tools=response_tools(r))
    events = builder.start()
    for c in [*call(0, "call_a", "apply_patch", '{"input": "*** Begin Patch\\n*** End Patch"}'),
              *call(1, "call_b", "crm__lookup", '{"q": "acme"}'), *call(2, "call_c", "crm__note", '{"input": "hi"}'),
              chunk({}, "tool_calls")]:
        events += builder.feed(c)
    events += builder.finish(completed_at=2)
    validate_response_events(events)
    output = builder.response["output"]
    assert output == [
        {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_a", "name": "apply_patch",
         "input": "*** Begin Patch\n*** End Patch", "status": "completed"},
        {"type": "function_call", "id": "fc_1", "call_id": "call_b", "name": "lookup", "namespace": "crm",
         "arguments": '{"q": "acme"}', "status": "completed"},
        {"type": "custom_tool_call", "id": "ctc_2", "call_id": "call_c", "name": "note", "namespace": "crm",
         "input": "hi", "status": "completed"}]
    kinds = [e["type"] for e in events]
    assert kinds.count("response.custom_tool_call_input.done") == 2
    done = [e for e in events if e["type"] == "response.custom_tool_call_input.done"]
    assert done[0]["input"] == "*** Begin Patch\n*** End Patch"
    assert "response.function_call_arguments.delta" in kinds  # the function streams its arguments as before


def test_the_response_lists_the_offered_tools_in_their_own_shapes() -> None:
    shell = response_shell(req(input="x", tools=TOOLS, tool_choice={"type": "custom", "name": "apply_patch"}),
                           response_id="resp_1", created_at=1, model="m")
    validate(shell, "Response")
    assert [t["type"] for t in shell["tools"]] == ["function", "custom", "namespace"]
    assert shell["tools"][1]["format"] == TOOLS[1]["format"]
    assert shell["tool_choice"] == {"type": "custom", "name": "apply_patch"}


def test_codex_request_bodies_validate_and_translate() -> None:
    r = req(**CODEX_GPT55)
    body = chat_body(r)
    assert [t["function"]["name"] for t in body["tools"]] == [
        "exec_command", "write_stdin", "request_user_input", "apply_patch", "view_image", "get_goal",
        "create_goal", "update_goal"]
    assert body["tool_choice"] == "auto" and body["parallel_tool_calls"] is True
    assert response_tools(r).dropped == ["tool_search", "web_search"]
    assert body["reasoning_effort"] == "medium"
    validate(response_shell(r, response_id="resp_1", created_at=1, model="m"), "Response")

    r = req(**CODEX_DEFAULT)  # Codex's default model: every tool in an additional_tools input item
    body = chat_body(r)
    assert r.tools is None and len(body["tools"]) == 12
    assert body["tools"][0]["function"]["name"] == "functions__exec"
    assert body["tools"][-1]["function"]["name"] == "collaboration__wait_agent"
    assert body["tool_choice"] == "auto" and body["parallel_tool_calls"] is False
    assert body["reasoning_effort"] == "low" and response_tools(r).dropped == []
    assert [m["role"] for m in body["messages"]] == ["system"] * 4 + ["user"] * 2
    validate(response_shell(r, response_id="resp_1", created_at=1, model="m"), "Response")


def test_item_references_resolve_to_stored_items() -> None:
    stored = {"fc_1": {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "shell", "arguments": "{}",
                       "status": "completed"}}
    items = input_items([{"type": "item_reference", "id": "fc_1"},
                         {"type": "function_call_output", "call_id": "c1", "output": "ok"}], counting_ids())
    assert items[0] == {"type": "item_reference", "id": "fc_1"}
    resolved = resolve_references(items, stored.get)
    assert resolved[0] == stored["fc_1"] and resolved[1] == items[1]
    with pytest.raises(InvalidRequest) as caught:
        resolve_references(input_items([{"role": "user", "content": "x"}, {"type": "item_reference", "id": "nope"}],
                                       counting_ids()), stored.get)
    assert caught.value.param == "input[1].id"


def test_additional_tools_items_add_tools_for_the_model() -> None:
    # Codex's default model ("responses lite") sends no top-level `tools`: they come in input items.
    extra = {"type": "additional_tools", "role": "developer", "tools": [
        {"type": "namespace", "name": "functions", "description": "", "tools": [
            {"type": "custom", "name": "exec", "description": "Run code."},
            {"type": "function", "name": "wait", "description": "Wait.", "parameters": PARAMS}]},
        {"type": "web_search"}]}
    r = req(input=[extra, {"role": "user", "content": "x"}], tools=[TOOLS[0]], tool_choice="auto")
    body = chat_body(r)
    assert [t["function"]["name"] for t in body["tools"]] == ["shell", "functions__exec", "functions__wait"]
    assert body["tool_choice"] == "auto"
    assert response_tools(r).dropped == ["web_search"]
    items = input_items(r.raw_input(), counting_ids())
    assert items[0] == {**extra, "id": "at_1"}
    validate(items[0], "AdditionalTools")
    assert [m["role"] for m in to_chat_request(r, [], items, model="m", stream=False).model_dump()["messages"]] \
        == ["user"]  # the item itself tells the model nothing


def test_additional_tools_in_the_stored_history_stay_offered() -> None:
    earlier = input_items([{"type": "additional_tools", "role": "developer", "tools": [TOOLS[1]]}], counting_ids())
    r = req(input="again", previous_response_id="resp_1")
    items = input_items(r.raw_input(), counting_ids())
    tools = response_tools(r, history=earlier, items=items)
    assert [t["function"]["name"] for t in tools.functions] == ["apply_patch"]
    assert tools.origin("apply_patch").kind == "custom"


@pytest.mark.parametrize(("item", "param"), [
    ({"type": "additional_tools", "role": "developer"}, "input[0].tools"),
    ({"type": "additional_tools", "role": "developer", "tools": [{"type": "function"}]}, "input[0].tools[0].name"),
])
def test_bad_additional_tools_items_name_the_parameter(item: dict[str, Any], param: str) -> None:
    r = req(input=[item, {"role": "user", "content": "x"}])
    with pytest.raises(InvalidRequest) as caught:
        response_tools(r)
        input_items(r.raw_input(), counting_ids())
    assert caught.value.param == param
