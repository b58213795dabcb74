"""Chat translation tables: (OpenAI request in -> Workers AI body out) and (Workers AI result -> chat.completion)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.chat import ChatCompletionRequest
from cfai_cli.core.translate.chat import WorkersChatCall, to_workers_chat
from cfai_cli.core.translate.chat_answer import finish_reason_for, from_workers_chat, truncate_at_stop
from cfai_cli.core.translate.toolset import INPUT_DESCRIPTION
from cfai_cli.core.workers.chat import ParsedChat, parse_chat_result, split_think
from cfai_cli.errors import InvalidRequest, UpstreamError
from tests.core.helpers import fixture_json, id_counter

NATIVE = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
CHAT = "@cf/zai-org/glm-4.7-flash"
DEFAULT_MAX = 1024
USER = {"role": "user", "content": "hi"}
IMAGE = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9"
         "awAAAABJRU5ErkJggg==")

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather",
    "parameters": {"type": "object", "required": ["location"], "properties": {
        "location": {"type": "string"},
        "unit_name": {"type": "string", "enum": ["c", "f"], "description": "Temperature unit"}}}}}
TIME_TOOL = {"type": "function", "function": {
    "name": "get_time", "description": "Current time in a timezone.",
    "parameters": {"type": "object", "properties": {"timezone": {"type": "string", "description": "IANA name"}}}}}
NATIVE_WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "get weather",
    "parameters": {"type": "object", "required": ["location"], "properties": {
        "location": {"type": "string", "description": "location"},
        "unit_name": {"type": "string", "enum": ["c", "f"], "description": "Temperature unit"}}}}}
NATIVE_TIME = TIME_TOOL
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def request(**fields: Any) -> ChatCompletionRequest:
    body = {"model": "gpt-4o", "messages": [USER], **fields}
    return validate_request(ChatCompletionRequest, body)


def plan(model: str, *, stream: bool = False, **fields: Any) -> WorkersChatCall:
    return to_workers_chat(request(**fields), model, default_max_tokens=DEFAULT_MAX, stream=stream)


# ---- OpenAI request -> Workers AI body --------------------------------------------------------------

TOOL_HISTORY = [
    {"role": "developer", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris and the time?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_a", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
        {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "call_b", "content": "12:00"},
    {"role": "tool", "tool_call_id": "call_a", "content": [{"type": "text", "text": "{\"temp\":"},
                                                           {"type": "text", "text": "12}"}]},
    {"role": "tool", "tool_call_id": "call_zzz", "name": "explicit_name", "content": "x"},
]
TOOL_HISTORY_OUT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris and the time?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_a", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
        {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
    {"role": "tool", "content": "12:00", "tool_call_id": "call_b", "name": "get_time"},
    {"role": "tool", "content": "{\"temp\":12}", "tool_call_id": "call_a", "name": "get_weather"},
    {"role": "tool", "content": "x", "tool_call_id": "call_zzz", "name": "explicit_name"},
]

# (id, model, request fields, expected Workers AI body)
BODY_CASES: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    ("native minimal gets the default budget", NATIVE, {},
     {"messages": [USER], "max_tokens": DEFAULT_MAX}),
    ("chat dialect minimal sends no budget", CHAT, {},
     {"messages": [USER]}),
    ("developer becomes system", NATIVE, {"messages": [{"role": "developer", "content": "Be terse."}, USER]},
     {"messages": [{"role": "system", "content": "Be terse."}, USER], "max_tokens": DEFAULT_MAX}),
    ("developer becomes system (chat)", CHAT, {"messages": [{"role": "developer", "content": "Be terse."}, USER]},
     {"messages": [{"role": "system", "content": "Be terse."}, USER]}),
    ("system text parts are joined", NATIVE,
     {"messages": [{"role": "system", "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]},
                   USER]},
     {"messages": [{"role": "system", "content": "AB"}, USER], "max_tokens": DEFAULT_MAX}),
    ("tool history: names looked up, null content", NATIVE, {"messages": TOOL_HISTORY},
     {"messages": TOOL_HISTORY_OUT, "max_tokens": DEFAULT_MAX}),
    ("tool history (chat)", CHAT, {"messages": TOOL_HISTORY}, {"messages": TOOL_HISTORY_OUT}),
    ("assistant arguments given as an object are stringified", NATIVE, {"messages": [
        USER, {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": {"a": 1}}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"}]},
     {"messages": [USER, {"role": "assistant", "content": "", "tool_calls": [
         {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
         {"role": "tool", "content": "ok", "tool_call_id": "c1", "name": "f"}], "max_tokens": DEFAULT_MAX}),
    ("text-only parts joined to a string", NATIVE,
     {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hello, "},
                                                {"type": "text", "text": "world"}]}]},
     {"messages": [{"role": "user", "content": "Hello, world"}], "max_tokens": DEFAULT_MAX}),
    ("image data URI kept as parts", NATIVE,
     {"messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                                {"type": "image_url", "image_url": {"url": IMAGE, "detail": "low"}}]}]},
     {"messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                                {"type": "image_url", "image_url": {"url": IMAGE}}]}],
      "max_tokens": DEFAULT_MAX}),
    ("image_url given as a bare string", CHAT,
     {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": IMAGE}]}]},
     {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": IMAGE}}]}]}),
    ("input_audio kept for chat dialect", CHAT,
     {"messages": [{"role": "user", "content": [{"type": "text", "text": "Transcribe"},
                                                {"type": "input_audio", "input_audio": {"data": "UklGRg==",
                                                                                        "format": "wav"}}]}]},
     {"messages": [{"role": "user", "content": [{"type": "text", "text": "Transcribe"},
                                                {"type": "input_audio", "input_audio": {"data": "UklGRg==",
                                                                                        "format": "wav"}}]}]}),
    ("native tools get descriptions on function and properties", NATIVE, {"tools": [WEATHER_TOOL, TIME_TOOL]},
     {"messages": [USER], "max_tokens": DEFAULT_MAX, "tools": [NATIVE_WEATHER, NATIVE_TIME]}),
    ("native tool without parameters", NATIVE, {"tools": [{"type": "function", "function": {"name": "ping"}}]},
     {"messages": [USER], "max_tokens": DEFAULT_MAX, "tools": [{"type": "function", "function": {
         "name": "ping", "description": "ping", "parameters": {"type": "object", "properties": {}}}}]}),
    ("chat dialect tools pass as OpenAI sent them", CHAT,
     {"tools": [WEATHER_TOOL], "tool_choice": "auto", "parallel_tool_calls": False},
     {"messages": [USER], "tools": [WEATHER_TOOL], "tool_choice": "auto", "parallel_tool_calls": False}),
    ("tool_choice none drops tools", NATIVE, {"tools": [WEATHER_TOOL], "tool_choice": "none"},
     {"messages": [USER], "max_tokens": DEFAULT_MAX}),
    ("tool_choice none drops tools (chat)", CHAT, {"tools": [WEATHER_TOOL], "tool_choice": "none"},
     {"messages": [USER]}),
    # tool_choice on native models, the way Cloudflare's client sends it (reference §2.5).
    ("named tool_choice keeps only that tool and requires it", NATIVE,
     {"tools": [WEATHER_TOOL, TIME_TOOL], "tool_choice": {"type": "function", "function": {"name": "get_time"}}},
     {"messages": [USER], "max_tokens": DEFAULT_MAX, "tools": [NATIVE_TIME], "tool_choice": "required"}),
    ("native tool_choice auto passes", NATIVE, {"tools": [TIME_TOOL], "tool_choice": "auto"},
     {"messages": [USER], "max_tokens": DEFAULT_MAX, "tools": [NATIVE_TIME], "tool_choice": "auto"}),
    ("native tool_choice required passes", NATIVE, {"tools": [TIME_TOOL], "tool_choice": "required"},
     {"messages": [USER], "max_tokens": DEFAULT_MAX, "tools": [NATIVE_TIME], "tool_choice": "required"}),
    ("native without tool_choice sends none", NATIVE, {"tools": [TIME_TOOL]},
     {"messages": [USER], "max_tokens": DEFAULT_MAX, "tools": [NATIVE_TIME]}),
    ("native parallel_tool_calls is not sent (the proxy keeps one call)", NATIVE,
     {"tools": [TIME_TOOL], "parallel_tool_calls": False},
     {"messages": [USER], "max_tokens": DEFAULT_MAX, "tools": [NATIVE_TIME]}),
    ("allowed_tools required: the allowed ones, required", NATIVE,
     {"tools": [WEATHER_TOOL, TIME_TOOL], "tool_choice": {"type": "allowed_tools", "allowed_tools": {
         "mode": "required", "tools": [{"type": "function", "function": {"name": "get_time"}}]}}},
     {"messages": [USER], "max_tokens": DEFAULT_MAX, "tools": [NATIVE_TIME], "tool_choice": "required"}),
    ("allowed_tools auto (chat)", CHAT,
     {"tools": [WEATHER_TOOL, TIME_TOOL], "tool_choice": {"type": "allowed_tools", "allowed_tools": {
         "mode": "auto", "tools": [{"type": "function", "function": {"name": "get_time"}}]}}},
     {"messages": [USER], "tools": [TIME_TOOL], "tool_choice": "auto"}),
    ("hosted tools are dropped, custom tools become functions", CHAT,
     {"tools": [{"type": "web_search"}, TIME_TOOL,
                {"type": "custom", "custom": {"name": "apply_patch", "description": "Edit files."}}],
      "tool_choice": {"type": "custom", "custom": {"name": "apply_patch"}}},
     {"messages": [USER], "tools": [{"type": "function", "function": {
         "name": "apply_patch", "description": "Edit files.", "parameters": {
             "type": "object", "required": ["input"],
             "properties": {"input": {"type": "string", "description": INPUT_DESCRIPTION}}}}}],
      "tool_choice": {"type": "function", "function": {"name": "apply_patch"}}}),
    ("namespace tools are flattened", CHAT,
     {"tools": [{"type": "namespace", "name": "crm", "description": "CRM", "tools": [
         {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}]}]},
     {"messages": [USER], "tools": [{"type": "function", "function": {
         "name": "crm__lookup", "parameters": {"type": "object", "properties": {}}, "description": "lookup: CRM"}}]}),
    ("custom and namespaced calls in history use the flat names", NATIVE,
     {"tools": [{"type": "custom", "custom": {"name": "apply_patch"}},
                {"type": "namespace", "name": "crm", "description": "CRM",
                 "tools": [{"type": "function", "name": "lookup"}]}],
      "messages": [USER, {"role": "assistant", "content": None, "tool_calls": [
          {"id": "call_1", "type": "custom", "custom": {"name": "apply_patch", "input": "*** Begin Patch"}},
          {"id": "call_2", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
          {"role": "tool", "tool_call_id": "call_1", "content": "done"},
          {"role": "tool", "tool_call_id": "call_2", "content": "{}"}]},
     {"messages": [USER, {"role": "assistant", "content": "", "tool_calls": [
         {"id": "call_1", "type": "function", "function": {"name": "apply_patch",
                                                            "arguments": '{"input": "*** Begin Patch"}'}},
         {"id": "call_2", "type": "function", "function": {"name": "crm__lookup", "arguments": "{}"}}]},
         {"role": "tool", "content": "done", "tool_call_id": "call_1", "name": "apply_patch"},
         {"role": "tool", "content": "{}", "tool_call_id": "call_2", "name": "crm__lookup"}],
      "max_tokens": DEFAULT_MAX, "tools": [
          {"type": "function", "function": {"name": "apply_patch", "description": "A tool that takes free-form text.",
                                            "parameters": {"type": "object", "required": ["input"], "properties": {
                                                "input": {"type": "string", "description": INPUT_DESCRIPTION}}}}},
          {"type": "function", "function": {"name": "crm__lookup", "description": "lookup: CRM",
                                            "parameters": {"type": "object", "properties": {}}}}]}),
    ("named tool_choice keeps only that tool (chat)", CHAT,
     {"tools": [WEATHER_TOOL, TIME_TOOL], "tool_choice": {"type": "function", "function": {"name": "get_time"}}},
     {"messages": [USER], "tools": [TIME_TOOL],
      "tool_choice": {"type": "function", "function": {"name": "get_time"}}}),
    ("response_format json_schema becomes a bare schema with a title", NATIVE,
     {"response_format": {"type": "json_schema", "json_schema": {"name": "person", "description": "A person",
                                                                 "schema": SCHEMA, "strict": True}}},
     {"messages": [USER], "max_tokens": DEFAULT_MAX, "response_format": {
         "type": "json_schema", "json_schema": {**SCHEMA, "title": "person", "description": "A person"}}}),
    ("response_format json_object", NATIVE, {"response_format": {"type": "json_object"}},
     {"messages": [USER], "max_tokens": DEFAULT_MAX, "response_format": {"type": "json_object"}}),
    ("response_format text is not sent", NATIVE, {"response_format": {"type": "text"}},
     {"messages": [USER], "max_tokens": DEFAULT_MAX}),
    ("chat dialect response_format passes in OpenAI form", CHAT,
     {"response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA, "strict": True}}},
     {"messages": [USER], "response_format": {"type": "json_schema", "json_schema": {
         "name": "person", "schema": SCHEMA, "strict": True}}}),
    ("max_tokens", NATIVE, {"max_tokens": 50}, {"messages": [USER], "max_tokens": 50}),
    ("max_completion_tokens wins over max_tokens", NATIVE, {"max_tokens": 50, "max_completion_tokens": 70},
     {"messages": [USER], "max_tokens": 70}),
    ("chat dialect budget only when asked", CHAT, {"max_completion_tokens": 70},
     {"messages": [USER], "max_tokens": 70}),
    ("sampling knobs pass through", NATIVE, {"temperature": 0.2, "top_p": 0.9},
     {"messages": [USER], "max_tokens": DEFAULT_MAX, "temperature": 0.2, "top_p": 0.9}),
    ("native top_p 0 is raised to the schema minimum", NATIVE, {"top_p": 0},
     {"messages": [USER], "max_tokens": DEFAULT_MAX, "top_p": 0.001}),
    ("chat top_p 0 passes", CHAT, {"top_p": 0}, {"messages": [USER], "top_p": 0}),
    ("seed 42 kept", NATIVE, {"seed": 42}, {"messages": [USER], "max_tokens": DEFAULT_MAX, "seed": 42}),
    ("seed 0 folded to 1", NATIVE, {"seed": 0}, {"messages": [USER], "max_tokens": DEFAULT_MAX, "seed": 1}),
    ("negative seed folded", NATIVE, {"seed": -5}, {"messages": [USER], "max_tokens": DEFAULT_MAX, "seed": 6}),
    ("huge seed folded", NATIVE, {"seed": 10_000_000_000},
     {"messages": [USER], "max_tokens": DEFAULT_MAX, "seed": 2}),
    ("chat seed 0 passes", CHAT, {"seed": 0}, {"messages": [USER], "seed": 0}),
    ("native penalties clamped at 0", NATIVE, {"presence_penalty": -1.5, "frequency_penalty": 0.5},
     {"messages": [USER], "max_tokens": DEFAULT_MAX, "presence_penalty": 0.0, "frequency_penalty": 0.5}),
    ("chat penalties pass", CHAT, {"presence_penalty": -1.5, "frequency_penalty": -2},
     {"messages": [USER], "presence_penalty": -1.5, "frequency_penalty": -2}),
    ("stop not sent to native", NATIVE, {"stop": ["\n\n", "END"]}, {"messages": [USER], "max_tokens": DEFAULT_MAX}),
    ("stop sent to chat dialect", CHAT, {"stop": ["\n\n", "END"]}, {"messages": [USER], "stop": ["\n\n", "END"]}),
    ("single stop string sent as a list", CHAT, {"stop": "END"}, {"messages": [USER], "stop": ["END"]}),
    ("reasoning_effort none disables thinking", CHAT, {"reasoning_effort": "none"},
     {"messages": [USER], "reasoning_effort": None}),
    ("reasoning_effort minimal becomes low", CHAT, {"reasoning_effort": "minimal"},
     {"messages": [USER], "reasoning_effort": "low"}),
    ("reasoning_effort high", CHAT, {"reasoning_effort": "high"}, {"messages": [USER], "reasoning_effort": "high"}),
    ("reasoning_effort max becomes high", CHAT, {"reasoning_effort": "max"},
     {"messages": [USER], "reasoning_effort": "high"}),
    ("reasoning_effort dropped for native", NATIVE, {"reasoning_effort": "high"},
     {"messages": [USER], "max_tokens": DEFAULT_MAX}),
    ("OpenAI-only fields are not forwarded", NATIVE,
     {"user": "u1", "logprobs": True, "top_logprobs": 2, "metadata": {"a": "b"}, "store": True, "n": 2,
      "stream_options": {"include_usage": True}},
     {"messages": [USER], "max_tokens": DEFAULT_MAX}),
]


@pytest.mark.parametrize(("model", "fields", "body"), [c[1:] for c in BODY_CASES], ids=[c[0] for c in BODY_CASES])
def test_to_workers_body(model: str, fields: dict[str, Any], body: dict[str, Any]) -> None:
    call = plan(model, **fields)
    assert call.body == body
    assert call.model_id == model
    assert call.chat_dialect is (model == CHAT)
    json.dumps(call.body, allow_nan=False)  # what goes on the wire is plain JSON


@pytest.mark.parametrize(("model", "stream", "extra"), [
    (NATIVE, True, {"stream": True}),
    (NATIVE, False, {}),
    (CHAT, True, {"stream": True, "stream_options": {"include_usage": True}}),
    (CHAT, False, {}),
])
def test_stream_flags(model: str, stream: bool, extra: dict[str, Any]) -> None:
    call = plan(model, stream=stream, stream_options={"include_usage": False})
    assert {k: v for k, v in call.body.items() if k.startswith("stream")} == extra


@pytest.mark.parametrize(("model", "fields", "max_sent", "stops"), [
    (NATIVE, {}, DEFAULT_MAX, []),
    (NATIVE, {"max_tokens": 5, "stop": "END"}, 5, ["END"]),
    (NATIVE, {"stop": ["a", "", "b"]}, DEFAULT_MAX, ["a", "b"]),
    (CHAT, {}, None, []),
    (CHAT, {"max_completion_tokens": 9, "stop": ["x"]}, 9, ["x"]),
])
def test_call_remembers_budget_and_stops(model: str, fields: dict[str, Any], max_sent: int | None,
                                         stops: list[str]) -> None:
    call = plan(model, **fields)
    assert call.max_tokens_sent == max_sent
    assert call.stop == stops


@pytest.mark.parametrize(("model", "fields", "param"), [
    (NATIVE, {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "Transcribe"},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]}]},
     "messages[0].content[1].type"),
    (NATIVE, {"messages": [USER, {"role": "user", "content": [
        {"type": "file", "file": {"file_data": "JVBERi0=", "filename": "a.pdf"}}]}]}, "messages[1].content[0].type"),
    (NATIVE, {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice"),
    (CHAT, {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice"),
    (NATIVE, {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}}, "tool_choice"),
])
def test_untranslatable_requests(model: str, fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        plan(model, **fields)
    assert info.value.param == param
    assert info.value.status == 400


@pytest.mark.parametrize("model", [NATIVE, CHAT])
@pytest.mark.parametrize("stream", [False, True])
def test_no_tools_translates_as_an_empty_tool_list_with_auto(model: str, stream: bool) -> None:
    # Without tools or tool_choice the translation takes a shorter way; it must come to the same call as the
    # full one (an empty tool list with tool_choice "auto" offers nothing, forces nothing, maps nothing back).
    def call(**fields: Any) -> WorkersChatCall:
        req = validate_request(ChatCompletionRequest, {"model": model, "messages": [USER], **fields})
        return to_workers_chat(req, model, default_max_tokens=DEFAULT_MAX, stream=stream)

    short, full = call(), call(tools=[], tool_choice="auto")
    assert short == full
    assert "tools" not in short.body and "tool_choice" not in short.body
    assert short.forced_tools == [] and short.tools.identity and not short.tools.dropped


def test_translation_does_not_mutate_the_request() -> None:
    req = request(tools=[WEATHER_TOOL], response_format={"type": "json_schema",
                                                          "json_schema": {"name": "p", "schema": SCHEMA}})
    before = req.model_dump()
    to_workers_chat(req, NATIVE, default_max_tokens=DEFAULT_MAX, stream=False)
    assert req.model_dump() == before
    assert "description" not in WEATHER_TOOL["function"]
    assert "title" not in SCHEMA


# ---- Workers AI result -> chat.completion ------------------------------------------------------------

def complete(fixtures: list[str] | list[dict[str, Any]], *, model: str = NATIVE, **fields: Any) -> dict[str, Any]:
    req = request(**fields)
    call = to_workers_chat(req, model, default_max_tokens=DEFAULT_MAX, stream=False)
    results = [parse_chat_result(fixture_json(f)["result"] if isinstance(f, str) else f) for f in fixtures]
    return dict(from_workers_chat(req, call, results, completion_id="chatcmpl-test", created=1_700_000_000,
                                  new_call_id=id_counter()))


def usage(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning}}


def call(id_: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": arguments}}


# (fixture, model, expected message, finish_reason, usage)
RESULT_CASES: list[tuple[str, str, dict[str, Any], str, dict[str, Any]]] = [
    ("native_text.json", NATIVE, {"content": "The capital of France is Paris."}, "stop", usage(43, 8)),
    ("native_text_cached.json", NATIVE, {"content": "Hello! How can I help you today?"}, "stop",
     usage(1042, 10, cached=1024)),
    ("native_tool_calls_flat.json", NATIVE, {"content": None, "tool_calls": [
        call("call_1", "get_weather", '{"location": "London", "unit": "celsius"}'),
        call("call_2", "get_time", '{"timezone": "Europe/London"}')]}, "tool_calls", usage(311, 42)),
    ("llama4_scout_tool_calls.json", NATIVE, {"content": None, "tool_calls": [
        call("call_1", "get_weather",
             '{"location": "Paris", "unit": "celsius"}'),
        call("call_2", "get_time", '{"timezone": "Europe/Paris"}')]}, "tool_calls", usage(402, 37)),
    ("llama4_scout_tool_calls_string_args.json", NATIVE, {"content": None, "tool_calls": [
        call("call_1", "get_weather",
             '{"location": "Paris", "unit": "celsius"}')]}, "tool_calls", usage(402, 21)),
    ("native_think_inline.json", NATIVE, {"content": "2 + 2 = 4.",
                                          "reasoning_content": "The user asks what 2 + 2 is. Simple arithmetic: 4."},
     "stop", usage(12, 29)),
    ("glm_chat_completion_tools.json", CHAT, {
        "content": None, "reasoning_content": "The user wants the weather in Berlin. I should call get_weather.",
        "tool_calls": [call("call_9f8e7d6c5b4a", "get_weather", '{"location":"Berlin"}')]},
     "tool_calls", usage(180, 46, reasoning=28)),
    ("qwen3_chat_completion_reasoning.json", NATIVE, {
        "content": "\n\nThe sky looks blue because of Rayleigh scattering.",
        "reasoning_content": "\nShort physics question; mention Rayleigh scattering.\n"}, "stop", usage(15, 64)),
    ("qwen3_text_completion.json", NATIVE, {"content": " once upon a time there was a robot."}, "length",
     usage(5, 10)),
    ("gpt_oss_responses.json", CHAT, {
        "content": "Let me check the weather.", "reasoning_content": "Need the weather first, then answer.",
        "tool_calls": [call("call_oss_4d5e6f", "get_weather", '{"location":"Tokyo"}')]},
     "tool_calls", usage(96, 58, reasoning=20)),
]


@pytest.mark.parametrize(("fixture", "model", "message", "finish", "usage_"), RESULT_CASES,
                         ids=[c[0] for c in RESULT_CASES])
def test_from_workers(fixture: str, model: str, message: dict[str, Any], finish: str,
                      usage_: dict[str, Any]) -> None:
    out = complete([fixture], model=model)
    assert out["id"] == "chatcmpl-test"
    assert out["object"] == "chat.completion"
    assert out["created"] == 1_700_000_000
    assert out["model"] == model
    assert out["usage"] == usage_
    [choice] = out["choices"]
    assert choice["index"] == 0
    assert choice["logprobs"] is None
    assert choice["finish_reason"] == finish
    assert choice["message"] == {"role": "assistant", "refusal": None, **message}
    for tool_call in choice["message"].get("tool_calls", []):
        assert isinstance(json.loads(tool_call["function"]["arguments"]), dict)


def test_json_mode_object_is_serialised() -> None:
    out = complete(["native_json_mode.json"], response_format={"type": "json_object"})
    content = out["choices"][0]["message"]["content"]
    assert isinstance(content, str)
    assert json.loads(content) == fixture_json("native_json_mode.json")["result"]["response"]
    assert "नमस्ते" in content  # not \u-escaped
    assert out["choices"][0]["finish_reason"] == "stop"


def test_gpt_oss_empty_stream_answer_is_not_a_result() -> None:
    with pytest.raises(UpstreamError):
        parse_chat_result(fixture_json("gpt_oss_stream_json.json")["result"])


@pytest.mark.parametrize("result", [None, "text", [], {}, {"usage": {"prompt_tokens": 1}}])
def test_unrecognised_results(result: Any) -> None:
    with pytest.raises(UpstreamError):
        parse_chat_result(result)


@pytest.mark.parametrize(("max_tokens", "finish"), [(7, "length"), (8, "length"), (9, "stop"), (None, "stop")])
def test_length_when_the_budget_was_used_up(max_tokens: int | None, finish: str) -> None:
    out = complete(["native_text.json"], max_tokens=max_tokens)  # completion_tokens == 8
    assert out["choices"][0]["finish_reason"] == finish


def test_tool_calls_win_over_length() -> None:
    out = complete(["native_tool_calls_flat.json"], max_tokens=42)
    assert out["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(("upstream", "finish"), [
    ("stop", "stop"), ("eos", "stop"), ("length", "length"), ("max_tokens", "length"),
    ("content_filter", "content_filter"), ("something_new", "stop"),
])
def test_upstream_finish_reason_is_mapped(upstream: str, finish: str) -> None:
    result = {"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"},
                                                        "finish_reason": upstream}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
    out = complete([result], model=CHAT, max_tokens=1)
    assert out["choices"][0]["finish_reason"] == finish


@pytest.mark.parametrize(("kwargs", "finish"), [
    ({"upstream": None, "has_tool_calls": False, "stopped": False, "completion_tokens": None, "max_tokens_sent": 5},
     "stop"),
    ({"upstream": None, "has_tool_calls": False, "stopped": False, "completion_tokens": 5, "max_tokens_sent": 5},
     "length"),
    ({"upstream": None, "has_tool_calls": False, "stopped": False, "completion_tokens": 4, "max_tokens_sent": 5},
     "stop"),
    ({"upstream": None, "has_tool_calls": False, "stopped": False, "completion_tokens": 9, "max_tokens_sent": None},
     "stop"),
    ({"upstream": "length", "has_tool_calls": True, "stopped": False, "completion_tokens": 9, "max_tokens_sent": 9},
     "tool_calls"),
    ({"upstream": "length", "has_tool_calls": False, "stopped": True, "completion_tokens": 9, "max_tokens_sent": 9},
     "stop"),
    ({"upstream": "stop", "has_tool_calls": False, "stopped": False, "completion_tokens": 9, "max_tokens_sent": 9},
     "stop"),
    ({"upstream": "tool_calls", "has_tool_calls": True, "stopped": False, "completion_tokens": 1,
      "max_tokens_sent": 9}, "tool_calls"),
])
def test_finish_reason_for(kwargs: dict[str, Any], finish: str) -> None:
    assert finish_reason_for(**kwargs) == finish


def test_usage_is_estimated_when_upstream_has_none() -> None:
    result = {"response": "Twelve characters."}  # 18 characters
    out = complete([result], messages=[{"role": "system", "content": "abcd"}, {"role": "user", "content": "efgh"}])
    prompt = math.ceil(len("abcd\nefgh") / 4)
    assert out["usage"] == usage(prompt, math.ceil(18 / 4))


@pytest.mark.parametrize(("stop", "content", "finish"), [
    (["Paris"], "The capital of France is ", "stop"),
    ("France", "The capital of ", "stop"),
    (["London"], "The capital of France is Paris.", "length"),  # no stop matched; 8 of 8 tokens used
    (["is", "capital"], "The ", "stop"),
    (["The"], "", "stop"),
])
def test_stop_sequences_truncate(stop: Any, content: str, finish: str) -> None:
    out = complete(["native_text.json"], stop=stop, max_tokens=8)
    choice = out["choices"][0]
    assert choice["message"]["content"] == content
    assert choice["finish_reason"] == finish


def test_stop_applies_to_content_not_reasoning() -> None:
    out = complete(["native_think_inline.json"], stop=["arithmetic"])
    message = out["choices"][0]["message"]
    assert message["content"] == "2 + 2 = 4."
    assert "arithmetic" in message["reasoning_content"]


def native(text: str, completion: int) -> dict[str, Any]:
    return {"response": text, "usage": {"prompt_tokens": 20, "completion_tokens": completion,
                                        "total_tokens": 20 + completion}}


def test_n_choices_from_several_results() -> None:
    out = complete([native("one", 5), native("two", 7), fixture_json("native_tool_calls_flat.json")["result"]
                    | {"usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}}], n=3)
    assert [c["index"] for c in out["choices"]] == [0, 1, 2]
    assert [c["message"]["content"] for c in out["choices"]] == ["one", "two", None]
    assert [c["finish_reason"] for c in out["choices"]] == ["stop", "stop", "tool_calls"]
    assert [t["id"] for t in out["choices"][2]["message"]["tool_calls"]] == ["call_1", "call_2"]
    assert out["usage"] == usage(20, 5 + 7 + 9)


def test_n_choices_with_one_missing_usage() -> None:
    out = complete([native("one", 5), {"response": "abcdefgh"}], n=2)
    assert out["usage"]["completion_tokens"] == 5 + 2
    assert out["usage"]["total_tokens"] == out["usage"]["prompt_tokens"] + 7


def test_generated_call_ids_are_unique_across_choices() -> None:
    flat = fixture_json("native_tool_calls_flat.json")["result"]
    out = complete([flat, flat], n=2)
    ids = [t["id"] for c in out["choices"] for t in c["message"]["tool_calls"]]
    assert ids == ["call_1", "call_2", "call_3", "call_4"]


# ---- small pure helpers -----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "stops", "expected"), [
    ("hello world", [], ("hello world", False)),
    ("hello world", ["o"], ("hell", True)),
    ("hello world", ["world", "lo"], ("hel", True)),
    ("hello world", ["", "x"], ("hello world", False)),
    ("hello world", ["hello world"], ("", True)),
    # The sequence that completes first wins, as when generation stops token by token.
    ("xabcdy", ["abcd", "c"], ("xab", True)),
    ("xabcdy", ["bc", "c"], ("xa", True)),
])
def test_truncate_at_stop(text: str, stops: list[str], expected: tuple[str, bool]) -> None:
    assert truncate_at_stop(text, stops) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("plain", (None, "plain")),
    ("<think>a</think>b", ("a", "b")),
    ("  <think>\na\n</think>\n\nb", ("a", "b")),
    ("<think></think>b", (None, "b")),
    ("<think>unfinished", ("unfinished", "")),
    ("opened in the prompt</think>answer", ("opened in the prompt", "answer")),
    ("answer mentions <think> later", (None, "answer mentions <think> later")),
])
def test_split_think(text: str, expected: tuple[str | None, str]) -> None:
    assert split_think(text) == expected


def test_parsed_dialects() -> None:
    dialects = {name: parse_chat_result(fixture_json(name)["result"]).dialect for name in (
        "native_text.json", "glm_chat_completion_tools.json", "qwen3_text_completion.json", "gpt_oss_responses.json")}
    assert dialects == {"native_text.json": "native", "glm_chat_completion_tools.json": "chat",
                        "qwen3_text_completion.json": "completion", "gpt_oss_responses.json": "responses"}


def test_parse_chat_result_returns_parsed_chat() -> None:
    parsed = parse_chat_result(fixture_json("native_tool_calls_flat.json")["result"])
    assert isinstance(parsed, ParsedChat)
    assert [(c.name, c.id) for c in parsed.choices[0].tool_calls] == [("get_weather", None), ("get_time", None)]
