"""Agent tool sets, as tables: hosted tools dropped, namespaces flattened and mapped back, custom tools both
ways, tool_choice per dialect, parallel_tool_calls false, and the forced-call retry (core.translate.toolset,
core.translate.forced, and their use in the chat translation)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.chat import ChatCompletionRequest
from cfai_cli.core.translate.chat import to_workers_chat
from cfai_cli.core.translate.chat_answer import from_workers_chat
from cfai_cli.core.translate.chat_stream import ChoiceStream
from cfai_cli.core.translate.forced import calls_from_retry, retry_body
from cfai_cli.core.translate.toolset import (
    GRAMMAR_LIMIT,
    NAME_LIMIT,
    ToolOrigin,
    choose,
    custom_input,
    tool_set,
)
from cfai_cli.core.workers.chat import ParsedChat, ParsedChoice, ParsedToolCall, parse_chat_result
from cfai_cli.errors import InvalidRequest
from tests.core.helpers import id_counter
from tests.openai_schema import validate

NATIVE = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
CHAT = "@cf/zai-org/glm-4.7-flash"
PARAMS = {"type": "object", "properties": {"city": {"type": "string"}}}
FN = {"type": "function", "function": {"name": "get_weather", "parameters": PARAMS}}
FLAT_FN = {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
CUSTOM = {"type": "custom", "name": "apply_patch", "description": "Edit files.",
          "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}
CHAT_CUSTOM = {"type": "custom", "custom": {"name": "run_sql", "format": {"type": "text"}}}
SPACE = {"type": "namespace", "name": "crm", "description": "CRM tools", "tools": [
    {"type": "function", "name": "lookup", "parameters": PARAMS}, {"type": "custom", "name": "note"}]}


# ---- normalisation -------------------------------------------------------------------------------

def names(raw: list[Any]) -> list[str]:
    return [t["function"]["name"] for t in tool_set(raw).functions]


@pytest.mark.parametrize(("raw", "flat", "dropped"), [
    ([FN, FLAT_FN], ["get_weather", "get_time"], []),
    ([{"type": "web_search"}, FN, {"type": "file_search", "vector_store_ids": []}, {"type": "web_search"},
      {"type": "mcp", "server_label": "x"}, {"type": "code_interpreter"}, {"type": "computer_use_preview"},
      {"type": "image_generation"}, {"type": "local_shell"}, {"type": "shell"}, {"type": "tool_search"},
      {"type": "apply_patch"}, {"type": "web_search_preview"}],
     ["get_weather"], ["web_search", "file_search", "mcp", "code_interpreter", "computer_use_preview",
                       "image_generation", "local_shell", "shell", "tool_search", "apply_patch", "web_search_preview"]),
    ([CUSTOM, CHAT_CUSTOM], ["apply_patch", "run_sql"], []),
    ([SPACE, FN], ["crm__lookup", "crm__note", "get_weather"], []),
    ([{"type": "namespace", "name": "a b", "description": "", "tools": [{"type": "function", "name": "c"}]}],
     ["a_b__c"], []),
])
def test_tools_normalise(raw: list[Any], flat: list[str], dropped: list[str]) -> None:
    tools = tool_set(raw)
    assert [t["function"]["name"] for t in tools.functions] == flat
    assert tools.dropped == dropped
    for tool in tools.functions:  # every one a valid chat function tool
        validate(tool, "ChatCompletionTool")


def test_namespace_and_custom_origins_map_back() -> None:
    tools = tool_set([SPACE, CUSTOM, FN])
    assert tools.origin("crm__lookup") == ToolOrigin("function", "lookup", "crm")
    assert tools.origin("crm__note") == ToolOrigin("custom", "note", "crm")
    assert tools.origin("apply_patch") == ToolOrigin("custom", "apply_patch")
    assert tools.origin("unknown") == ToolOrigin("function", "unknown")  # passes through
    assert tools.chat_name("crm__lookup") == "lookup"  # unique inner name
    assert tools.flat_name("lookup", "crm") == "crm__lookup" and tools.flat_name("lookup") == "crm__lookup"
    assert not tools.identity and tool_set([FN, FLAT_FN]).identity


def test_clashing_and_long_names_stay_unique_within_the_limit() -> None:
    long = "x" * 120
    raw = [{"type": "function", "name": long}, {"type": "function", "name": long + "y"},
           {"type": "namespace", "name": "a", "description": "", "tools": [{"type": "function", "name": "b"}]},
           {"type": "function", "name": "a__b"}]
    tools = tool_set(raw)
    flat = [t["function"]["name"] for t in tools.functions]
    assert len(set(flat)) == 4 and all(len(n) <= NAME_LIMIT for n in flat)
    assert [tools.origin(n).name for n in flat] == [long, long + "y", "b", "a__b"]
    assert tools.chat_name(flat[2]) == "b"  # "b" is unique; "a__b" kept its own name
    assert tools.flat_name("a__b") == "a__b"


def test_custom_tools_become_a_function_taking_input() -> None:
    big = {**CUSTOM, "format": {"type": "grammar", "syntax": "lark", "definition": "r" * (GRAMMAR_LIMIT * 3)}}
    fn = tool_set([big]).functions[0]["function"]
    assert fn["parameters"]["required"] == ["input"] and fn["parameters"]["properties"]["input"]["type"] == "string"
    assert fn["description"].startswith("Edit files.") and "lark grammar" in fn["description"]
    assert "(grammar shortened)" in fn["description"] and len(fn["description"]) < GRAMMAR_LIMIT + 300
    chat_grammar = {"type": "custom", "custom": {"name": "g", "format": {
        "type": "grammar", "grammar": {"syntax": "regex", "definition": "^[a-z]+$"}}}}
    assert "^[a-z]+$" in tool_set([chat_grammar]).functions[0]["function"]["description"]


@pytest.mark.parametrize(("raw", "param"), [
    ([{"name": "f"}], "tools[0].type"),
    (["web_search"], "tools[0]"),
    ([{"type": "function"}], "tools[0].name"),
    ([{"type": "function", "function": {}}], "tools[0].function.name"),
    ([{"type": "function", "name": "bad name!"}], "tools[0].name"),
    ([{"type": "custom", "custom": {}}], "tools[0].custom.name"),
    ([{"type": "namespace", "name": "n", "description": "", "tools": []}], "tools[0].tools"),
    ([{"type": "namespace", "description": "", "tools": [FLAT_FN]}], "tools[0].name"),
    ([{"type": "namespace", "name": "n", "description": "", "tools": [{"type": "web_search"}]}],
     "tools[0].tools[0].type"),
])
def test_broken_tools_are_a_400_naming_the_parameter(raw: list[Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        tool_set(raw)
    assert caught.value.param == param


@pytest.mark.parametrize(("arguments", "expected"), [
    ('{"input": "*** Begin Patch"}', "*** Begin Patch"),
    ('{"patch": "raw"}', "raw"),  # one string value under another name
    ("*** Begin Patch\n", "*** Begin Patch\n"),  # not JSON: the model wrote the input itself
    ('"quoted"', "quoted"),
    ('{"a": 1, "b": 2}', '{"a": 1, "b": 2}'),
])
def test_custom_input_from_arguments(arguments: str, expected: str) -> None:
    assert custom_input(arguments) == expected


# ---- tool_choice ---------------------------------------------------------------------------------

CHOICE_TOOLS = [FN, FLAT_FN, CUSTOM, SPACE, {"type": "web_search"}]


@pytest.mark.parametrize(("choice", "offered", "mode", "forced"), [
    (None, ["get_weather", "get_time", "apply_patch", "crm__lookup", "crm__note"], None, ()),
    ("auto", ["get_weather", "get_time", "apply_patch", "crm__lookup", "crm__note"], "auto", ()),
    ("none", [], "none", ()),
    ("required", ["get_weather", "get_time", "apply_patch", "crm__lookup", "crm__note"], "required",
     ("get_weather", "get_time", "apply_patch", "crm__lookup", "crm__note")),
    ({"type": "function", "function": {"name": "get_time"}}, ["get_time"], "required", ("get_time",)),
    ({"type": "function", "name": "get_time"}, ["get_time"], "required", ("get_time",)),
    ({"type": "custom", "name": "apply_patch"}, ["apply_patch"], "required", ("apply_patch",)),
    ({"type": "custom", "custom": {"name": "note"}}, ["crm__note"], "required", ("crm__note",)),
    ({"type": "function", "name": "lookup"}, ["crm__lookup"], "required", ("crm__lookup",)),
    ({"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "get_time"},
                                                             {"type": "custom", "name": "apply_patch"}]},
     ["get_time", "apply_patch"], "required", ("get_time", "apply_patch")),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [
        {"type": "function", "function": {"name": "get_weather"}}]}}, ["get_weather"], "auto", ()),
    ({"type": "web_search_preview"}, ["get_weather", "get_time", "apply_patch", "crm__lookup", "crm__note"],
     "auto", ()),
])
def test_tool_choice_applies_to_the_flat_set(choice: Any, offered: list[str], mode: str | None,
                                             forced: tuple[str, ...]) -> None:
    plan = choose(tool_set(CHOICE_TOOLS), choice)
    assert [t["function"]["name"] for t in plan.offered] == offered
    assert plan.mode == mode and plan.forced == forced


def test_a_named_choice_must_name_an_offered_tool() -> None:
    with pytest.raises(InvalidRequest) as caught:
        choose(tool_set([FN]), {"type": "custom", "name": "get_weather"})
    assert caught.value.param == "tool_choice"


# ---- the chat translation both ways --------------------------------------------------------------

def request(**fields: Any) -> ChatCompletionRequest:
    return validate_request(ChatCompletionRequest, {"model": "m", "messages": [{"role": "user", "content": "go"}],
                                                    **fields})


@pytest.mark.parametrize(("model", "choice", "body_choice", "tools"), [
    # Native models, as Cloudflare's client sends it: a named function alone in `tools`, then "required".
    (NATIVE, "auto", "auto", ["get_weather", "apply_patch"]),
    (NATIVE, "required", "required", ["get_weather", "apply_patch"]),
    (NATIVE, {"type": "function", "function": {"name": "get_weather"}}, "required", ["get_weather"]),
    (NATIVE, {"type": "custom", "custom": {"name": "apply_patch"}}, "required", ["apply_patch"]),
    (NATIVE, "none", None, None),
    (NATIVE, None, None, ["get_weather", "apply_patch"]),
    # Chat-dialect models honour OpenAI's tool_choice themselves.
    (CHAT, "required", "required", ["get_weather", "apply_patch"]),
    (CHAT, {"type": "custom", "custom": {"name": "apply_patch"}},
     {"type": "function", "function": {"name": "apply_patch"}}, ["apply_patch"]),
    (CHAT, "none", None, None),
])
def test_tool_choice_per_dialect(model: str, choice: Any, body_choice: Any, tools: list[str] | None) -> None:
    fields: dict[str, Any] = {"tools": [FN, {"type": "custom", "custom": {"name": "apply_patch"}}]}
    if choice is not None:
        fields["tool_choice"] = choice
    body = to_workers_chat(request(**fields), model, default_max_tokens=100, stream=False).body
    assert body.get("tool_choice") == body_choice
    assert ([t["function"]["name"] for t in body["tools"]] if "tools" in body else None) == tools


def answer(req: ChatCompletionRequest, model: str, calls: list[ParsedToolCall]) -> dict[str, Any]:
    call = to_workers_chat(req, model, default_max_tokens=100, stream=False)
    result = ParsedChat("native", [ParsedChoice(tool_calls=calls)], None)
    completion = from_workers_chat(req, call, [result], completion_id="c", created=0, new_call_id=id_counter())
    validate(dict(completion), "CreateChatCompletionResponse")
    return dict(completion["choices"][0]["message"])


def test_chat_answers_map_custom_and_namespaced_calls_back() -> None:
    req = request(tools=[{"type": "custom", "custom": {"name": "apply_patch"}}, SPACE, {"type": "web_search"}])
    message = answer(req, NATIVE, [ParsedToolCall("apply_patch", '{"input": "*** Begin Patch"}'),
                                   ParsedToolCall("crm__lookup", '{"city": "Oslo"}'),
                                   ParsedToolCall("crm__note", '{"input": "hello"}')])
    assert message["tool_calls"] == [
        {"id": "call_1", "type": "custom", "custom": {"name": "apply_patch", "input": "*** Begin Patch"}},
        {"id": "call_2", "type": "function", "function": {"name": "lookup", "arguments": '{"city": "Oslo"}'}},
        {"id": "call_3", "type": "custom", "custom": {"name": "note", "input": "hello"}}]


def test_parallel_tool_calls_false_keeps_the_first_call() -> None:
    calls = [ParsedToolCall("get_weather", "{}"), ParsedToolCall("get_time", "{}")]
    assert len(answer(request(tools=[FN, TIME]), NATIVE, calls)["tool_calls"]) == 2
    single = answer(request(tools=[FN, TIME], parallel_tool_calls=False), NATIVE, calls)["tool_calls"]
    assert [c["function"]["name"] for c in single] == ["get_weather"]


def test_parallel_tool_calls_false_in_a_stream() -> None:
    events = [{"tool_calls": [{"id": "a", "type": "function", "index": 0,
                               "function": {"name": "get_weather", "arguments": "{}"}},
                              {"id": "b", "type": "function", "index": 1,
                               "function": {"name": "get_time", "arguments": "{}"}}]}, {"response": "", "usage": {
                                   "prompt_tokens": 1, "completion_tokens": 2}}]

    def called(limit: int | None) -> list[str]:
        stream = ChoiceStream(index=0, new_call_id=id_counter(), max_tool_calls=limit)
        deltas = [d for e in events for d in stream.feed(e)] + stream.finish(done=True)
        return [c["function"]["name"] for d in deltas for c in d["delta"].get("tool_calls", []) if "function" in c]

    assert called(None) == ["get_weather", "get_time"]
    assert called(1) == ["get_weather"]


# ---- the forced-call retry -----------------------------------------------------------------------

@pytest.mark.parametrize("model", [NATIVE, CHAT])
def test_retry_body_asks_for_the_arguments_in_json_mode(model: str) -> None:
    req = request(tools=[FN, TIME], tool_choice={"type": "function", "function": {"name": "get_weather"}},
                  stop=["END"], parallel_tool_calls=False)
    call = to_workers_chat(req, model, default_max_tokens=100, stream=True)
    body = retry_body(call)
    assert body is not None
    assert not {"tools", "tool_choice", "stream", "stop", "parallel_tool_calls", "stream_options"} & body.keys()
    assert body["messages"][:-1] == call.body["messages"]
    assert body["messages"][-1]["role"] == "system" and "`get_weather`" in body["messages"][-1]["content"]
    fmt = body["response_format"]
    schema = fmt["json_schema"] if model == NATIVE else fmt["json_schema"]["schema"]  # bare on native models
    assert schema["properties"]["city"]["type"] == "string"


def test_retry_schema_for_several_forced_tools_is_an_any_of() -> None:
    call = to_workers_chat(request(tools=[FN, TIME], tool_choice="required"), NATIVE, default_max_tokens=100,
                           stream=False)
    body = retry_body(call)
    assert body is not None
    options = body["response_format"]["json_schema"]["anyOf"]
    assert [o["properties"]["name"]["const"] for o in options] == ["get_weather", "get_time"]
    assert all(o["required"] == ["name", "arguments"] for o in options)


def test_no_retry_without_a_forced_tool() -> None:
    assert retry_body(to_workers_chat(request(tools=[FN]), NATIVE, default_max_tokens=100, stream=False)) is None


@pytest.mark.parametrize(("text", "forced", "expected"), [
    ('{"city": "Paris"}', ["get_weather"], [("get_weather", {"city": "Paris"})]),
    ('{"name": "get_weather", "arguments": {"city": "Oslo"}}', ["get_weather"], [("get_weather", {"city": "Oslo"})]),
    ('```json\n{"city": "Rome"}\n```', ["get_weather"], [("get_weather", {"city": "Rome"})]),
    ('{"name": "get_time", "arguments": {}}', ["get_weather", "get_time"], [("get_time", {})]),
    ('{"city": "Paris"}', ["get_weather", "get_time"], []),  # several: the name is needed
    ('["x"]', ["get_weather"], []),
    ("It is sunny.", ["get_weather"], []),
    (None, ["get_weather"], []),
])
def test_calls_from_the_retry(text: str | None, forced: list[str], expected: list[tuple[str, Any]]) -> None:
    assert [(c.name, json.loads(c.arguments)) for c in calls_from_retry(text, forced)] == expected


def test_native_json_mode_object_answer_reads_as_a_call() -> None:
    parsed = parse_chat_result({"response": {"city": "Lima"}, "usage": {"prompt_tokens": 3, "completion_tokens": 4}})
    calls = calls_from_retry(parsed.choices[0].text, ["get_weather"])
    assert calls and json.loads(calls[0].arguments) == {"city": "Lima"}
