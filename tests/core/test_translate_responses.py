"""Responses translation tables: (Responses request in -> chat request out) and (chat chunks -> event order)."""

from __future__ import annotations

from typing import Any

import pytest

from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.chat import ChatCompletion, ChatCompletionChunk
from cfai_cli.core.openai.responses import CreateResponseRequest
from cfai_cli.core.translate.responses import check_supported, input_items, response_shell, to_chat_request
from cfai_cli.core.translate.responses_stream import ResponseBuilder, response_from_completion
from cfai_cli.errors import InvalidRequest, RateLimited, UpstreamStreamError
from tests.core.helpers import counting_ids
from tests.openai_schema import validate, validate_response_events

IMAGE = "data:image/png;base64,iVBORw0KGgo="
FN_TOOL = {"type": "function", "name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": False}


def req(**fields: Any) -> CreateResponseRequest:
    return validate_request(CreateResponseRequest, {"model": "gpt-4o", **fields})


def chat_body(r: CreateResponseRequest, history: list[dict[str, Any]] | None = None, *,
              stream: bool = False) -> dict[str, Any]:
    items = input_items(r.raw_input(), counting_ids())
    return to_chat_request(r, history or [], items, model=r.model or "m", stream=stream).model_dump(
        exclude_none=True, by_alias=True)


# ---- input forms -> chat messages ------------------------------------------------------------------

INPUT_CASES: list[tuple[str, dict[str, Any], list[dict[str, Any]]]] = [
    ("string", {"input": "hi"}, [{"role": "user", "content": "hi"}]),
    ("instructions first", {"input": "hi", "instructions": "Be brief."},
     [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]),
    ("easy messages", {"input": [{"role": "developer", "content": "Rules"}, {"role": "user", "content": "q"},
                                 {"role": "assistant", "content": "a"}, {"role": "user", "content": "q2"}]},
     [{"role": "system", "content": "Rules"}, {"role": "user", "content": "q"},
      {"role": "assistant", "content": "a"}, {"role": "user", "content": "q2"}]),
    ("typed message with parts", {"input": [{"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "What is "}, {"type": "input_text", "text": "this?"}]}]},
     [{"role": "user", "content": "What is this?"}]),
    ("image part", {"input": [{"role": "user", "content": [
        {"type": "input_text", "text": "Describe"}, {"type": "input_image", "image_url": IMAGE}]}]},
     [{"role": "user", "content": [{"type": "text", "text": "Describe"},
                                   {"type": "image_url", "image_url": {"url": IMAGE, "detail": "auto"}}]}]),
    ("assistant output_text history", {"input": [
        {"type": "message", "role": "assistant", "id": "msg_old", "status": "completed",
         "content": [{"type": "output_text", "text": "Earlier", "annotations": []}]},
        {"role": "user", "content": "more"}]},
     [{"role": "assistant", "content": "Earlier"}, {"role": "user", "content": "more"}]),
    ("function call round trip", {"input": [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"type": "function_call", "call_id": "call_a", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call", "call_id": "call_b", "name": "get_weather", "arguments": {"city": "Rome"}},
        {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
        {"type": "function_call_output", "call_id": "call_b", "output": [{"type": "input_text", "text": "rain"}]}]},
     [{"role": "user", "content": "Weather in Paris and Rome?"},
      {"role": "assistant", "tool_calls": [
          {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
          {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]},
      {"role": "tool", "content": "sunny", "tool_call_id": "call_a"},
      {"role": "tool", "content": "rain", "tool_call_id": "call_b"}]),
    ("reasoning items are not sent on", {"input": [
        {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "hm"}]},
        {"role": "user", "content": "go"}]}, [{"role": "user", "content": "go"}]),
    ("legacy input_items", {"input_items": [{"role": "user", "content": "old"}]}, [{"role": "user", "content": "old"}]),
]


@pytest.mark.parametrize(("fields", "expected"), [c[1:] for c in INPUT_CASES], ids=[c[0] for c in INPUT_CASES])
def test_input_forms_become_chat_messages(fields: dict[str, Any], expected: list[dict[str, Any]]) -> None:
    assert chat_body(req(**fields))["messages"] == expected


def test_bare_input_body_needs_no_model() -> None:
    r = validate_request(CreateResponseRequest, {"input": "Onyx says hi"})
    assert r.model is None
    assert chat_body(r)["messages"] == [{"role": "user", "content": "Onyx says hi"}]


def test_history_comes_before_this_turn() -> None:
    history = input_items([{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"}], counting_ids())
    body = chat_body(req(input="three", instructions="Sys"), history)
    assert [m["content"] for m in body["messages"]] == ["Sys", "one", "two", "three"]


def test_input_items_are_normalised_with_ids() -> None:
    items = input_items([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
                         {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}", "id": "fc_keep"},
                         {"type": "function_call_output", "call_id": "c", "output": "ok"}], counting_ids())
    assert items == [
        {"type": "message", "id": "msg_1", "role": "user", "content": [{"type": "input_text", "text": "hi"}],
         "status": "completed"},
        {"type": "message", "id": "msg_2", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "yo", "annotations": [], "logprobs": []}]},
        {"type": "function_call", "id": "fc_keep", "call_id": "c", "name": "f", "arguments": "{}",
         "status": "completed"},
        {"type": "function_call_output", "id": "fco_1", "call_id": "c", "output": "ok", "status": "completed"},
    ]
    validate({"object": "list", "data": items, "first_id": "msg_1", "last_id": "fco_1", "has_more": False},
             "ResponseItemList")


# ---- options -> chat request ---------------------------------------------------------------------

OPTION_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("sampling and limit", {"max_output_tokens": 50, "temperature": 0.2, "top_p": 0.9},
     {"max_completion_tokens": 50, "temperature": 0.2, "top_p": 0.9}),
    ("function tools flatten", {"tools": [FN_TOOL], "tool_choice": "required", "parallel_tool_calls": False},
     {"tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                                  "parameters": FN_TOOL["parameters"], "strict": False}}],
      "tool_choice": "required", "parallel_tool_calls": False}),
    ("named tool choice", {"tools": [FN_TOOL], "tool_choice": {"type": "function", "name": "get_weather"}},
     {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
    ("allowed tools", {"tools": [FN_TOOL], "tool_choice": {"type": "allowed_tools", "mode": "auto",
                                                           "tools": [{"type": "function", "name": "get_weather"}]}},
     {"tool_choice": {"type": "allowed_tools", "allowed_tools": {
         "mode": "auto", "tools": [{"type": "function", "function": {"name": "get_weather"}}]}}}),
    ("json object", {"text": {"format": {"type": "json_object"}}}, {"response_format": {"type": "json_object"}}),
    ("json schema", {"text": {"format": {"type": "json_schema", "name": "City", "strict": True,
                                         "schema": {"type": "object"}}}},
     {"response_format": {"type": "json_schema", "json_schema": {"name": "City", "schema": {"type": "object"},
                                                                 "strict": True}}}),
    ("reasoning effort", {"reasoning": {"effort": "low", "summary": "auto"}}, {"reasoning_effort": "low"}),
    ("reasoning effort max (gpt-5.6 and later)", {"reasoning": {"effort": "max", "context": "all_turns"}},
     {"reasoning_effort": "max"}),
]


@pytest.mark.parametrize(("fields", "expected"), [c[1:] for c in OPTION_CASES], ids=[c[0] for c in OPTION_CASES])
def test_options_map_to_chat(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    body = chat_body(req(input="hi", **fields))
    for key, value in expected.items():
        assert body[key] == value, key


def test_streaming_asks_for_usage() -> None:
    body = chat_body(req(input="hi"), stream=True)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


ERROR_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("no input", {}, "input"),
    ("item reference without id", {"input": [{"type": "item_reference"}]}, "input[0].id"),
    ("only a hosted tool item: nothing to send", {"input": [{"type": "web_search_call", "id": "ws"}]}, "input"),
    ("unknown item type", {"input": [{"type": "telepathy_call", "id": "t"}]}, "input[0].type"),
    ("custom call without call_id", {"input": [{"type": "custom_tool_call", "name": "f", "input": "x"}]},
     "input[0].call_id"),
    ("custom output without output", {"input": [{"type": "custom_tool_call_output", "call_id": "c"}]},
     "input[0].output"),
    ("namespace without tools", {"input": "x", "tools": [{"type": "namespace", "name": "crm", "description": ""}]},
     "tools[0].tools"),
    ("custom tool without name", {"input": "x", "tools": [{"type": "custom"}]}, "tools[0].name"),
    ("file image", {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]},
     "input[0].content[0].image_url"),
    ("input file", {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
     "input[0].content[0].type"),
    ("bad role", {"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ("call without call_id", {"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
     "input[0].call_id"),
    ("background", {"input": "x", "background": True}, "background"),
    ("conversation", {"input": "x", "conversation": "conv_1"}, "conversation"),
]


@pytest.mark.parametrize(("fields", "param"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_unsupported_or_broken_input_is_a_400_with_its_param(fields: dict[str, Any], param: str) -> None:
    r = req(**fields)
    with pytest.raises(InvalidRequest) as caught:
        check_supported(r)
        chat_body(r)
    assert caught.value.status == 400 and caught.value.param == param


def test_json_schema_format_needs_a_schema() -> None:
    with pytest.raises(InvalidRequest) as caught:
        req(input="x", text={"format": {"type": "json_schema", "name": "x"}})
    assert caught.value.param == "text.format"


# ---- chat chunks -> Responses events ---------------------------------------------------------------


def chunk(delta: dict[str, Any], finish: str | None = None) -> ChatCompletionChunk:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}  # type: ignore[typeddict-item]


USAGE_CHUNK: ChatCompletionChunk = {
    "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
    "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12,
              "completion_tokens_details": {"reasoning_tokens": 3}}}

ROLE = chunk({"role": "assistant", "content": ""})
TEXT = ["response.output_item.added", "response.content_part.added"]
TEXT_DONE = ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
START = ["response.created", "response.in_progress"]

STREAM_CASES: list[tuple[str, list[ChatCompletionChunk], bool, list[str]]] = [
    ("text", [ROLE, chunk({"content": "Hel"}), chunk({"content": "lo"}), chunk({}, "stop"), USAGE_CHUNK], False,
     [*START, *TEXT, "response.output_text.delta", "response.output_text.delta", *TEXT_DONE, "response.completed"]),
    ("reasoning then text", [ROLE, chunk({"reasoning_content": "Think"}), chunk({"content": "Answer"}),
                             chunk({}, "stop")], False,
     [*START, "response.output_item.added", "response.reasoning_text.delta", "response.reasoning_text.done",
      "response.output_item.done", *TEXT, "response.output_text.delta", *TEXT_DONE, "response.completed"]),
    ("reasoning with summary", [chunk({"reasoning_content": "Think"}), chunk({"content": "A"}), chunk({}, "stop")],
     True,
     [*START, "response.output_item.added", "response.reasoning_summary_part.added", "response.reasoning_text.delta",
      "response.reasoning_summary_text.delta", "response.reasoning_text.done", "response.reasoning_summary_text.done",
      "response.reasoning_summary_part.done", "response.output_item.done", *TEXT, "response.output_text.delta",
      *TEXT_DONE, "response.completed"]),
    ("two tool calls", [ROLE,
                        chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                               "function": {"name": "f", "arguments": ""}}]}),
                        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
                        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
                        chunk({"tool_calls": [{"index": 1, "id": "call_2", "type": "function",
                                               "function": {"name": "g", "arguments": "{}"}}]}),
                        chunk({}, "tool_calls")], False,
     [*START, "response.output_item.added", "response.function_call_arguments.delta",
      "response.function_call_arguments.delta", "response.output_item.added", "response.function_call_arguments.delta",
      "response.function_call_arguments.done", "response.output_item.done",
      "response.function_call_arguments.done", "response.output_item.done", "response.completed"]),
    ("text then tool", [chunk({"content": "Let me check."}),
                        chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                               "function": {"name": "f", "arguments": "{}"}}]}),
                        chunk({}, "tool_calls")], False,
     [*START, *TEXT, "response.output_text.delta", *TEXT_DONE, "response.output_item.added",
      "response.function_call_arguments.delta", "response.function_call_arguments.done", "response.output_item.done",
      "response.completed"]),
    ("length limit", [chunk({"content": "cut"}), chunk({}, "length")], False,
     [*START, *TEXT, "response.output_text.delta", *TEXT_DONE, "response.incomplete"]),
    ("nothing at all", [ROLE, chunk({}, "stop")], False, [*START, "response.completed"]),
]


def run(chunks: list[ChatCompletionChunk], *, summary: bool = False,
        fail: Exception | None = None) -> tuple[list[dict[str, Any]], ResponseBuilder]:
    shell = response_shell(req(input="x"), response_id="resp_1", created_at=100, model="@cf/m/x")
    builder = ResponseBuilder(shell, new_id=counting_ids(), summary=summary)
    events = builder.start()
    for c in chunks:
        events += builder.feed(c)
    if isinstance(fail, UpstreamStreamError | RateLimited):
        events += builder.fail(fail)
    else:
        events += builder.finish(completed_at=101)
    return events, builder


@pytest.mark.parametrize(("chunks", "summary", "order"), [c[1:] for c in STREAM_CASES],
                         ids=[c[0] for c in STREAM_CASES])
def test_stream_event_order(chunks: list[ChatCompletionChunk], summary: bool, order: list[str]) -> None:
    events, builder = run(chunks, summary=summary)
    assert [e["type"] for e in events] == order
    validate_response_events(events)
    assert events[-1]["response"] == builder.response


def test_final_response_of_a_stream() -> None:
    _, builder = run([ROLE, chunk({"reasoning_content": "Think"}), chunk({"content": "Hi"}),
                           chunk({"tool_calls": [{"index": 0, "id": "call_9", "type": "function",
                                                  "function": {"name": "f", "arguments": '{"x":1}'}}]}),
                           chunk({}, "tool_calls"), USAGE_CHUNK])
    final = builder.response
    assert final["status"] == "completed" and final["completed_at"] == 101
    assert final["output_text"] == "Hi"
    assert final["output"] == [
        {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "Think"}],
         "status": "completed"},
        {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "Hi", "annotations": [], "logprobs": []}]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_9", "name": "f", "arguments": '{"x":1}',
         "status": "completed"},
    ]
    assert final["usage"] == {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                              "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 3},
                              "total_tokens": 12}
    validate(final, "Response")


def test_length_limit_marks_the_response_incomplete() -> None:
    _, builder = run([chunk({"content": "cut"}), chunk({}, "length")])
    assert builder.response["status"] == "incomplete"
    assert builder.response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert builder.response["completed_at"] is None
    assert builder.response["output"][0]["status"] == "incomplete"


@pytest.mark.parametrize(("error", "code"), [
    (UpstreamStreamError("Workers AI reported an error mid-stream (3040): busy", upstream_code=3040), "server_error"),
    (RateLimited("Too many requests"), "rate_limit_exceeded"),
])
def test_failure_mid_stream_ends_with_error_then_response_failed(error: Exception, code: str) -> None:
    events, _ = run([chunk({"content": "part"})], fail=error)
    assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
    assert events[-2]["message"] == str(error) and events[-2]["code"] == getattr(error, "code", None)
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"] == {"code": code, "message": str(error)}
    assert failed["output"][0]["status"] == "incomplete" and failed["output"][0]["content"][0]["text"] == "part"
    validate_response_events(events)


def test_whole_answer_matches_what_the_stream_builds() -> None:
    completion: ChatCompletion = {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "@cf/m/x",
        "choices": [{"index": 0, "logprobs": None, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Checking.", "refusal": None, "reasoning_content": "Need data.",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}
    shell = response_shell(req(input="x", tools=[FN_TOOL]), response_id="resp_1", created_at=100, model="@cf/m/x")
    response = response_from_completion(completion, shell, new_id=counting_ids(), completed_at=102)
    assert [item["type"] for item in response["output"]] == ["reasoning", "message", "function_call"]
    assert response["output"][2]["call_id"] == "call_1"
    assert response["usage"]["total_tokens"] == 7
    assert response["tools"] == [{"type": "function", "name": "get_weather", "description": "Weather for a city",
                                  "parameters": FN_TOOL["parameters"], "strict": False}]
    validate(response, "Response")


@pytest.mark.parametrize(("fields", "param"), [
    ({"tools": [{"type": "function", "name": "bad name!"}]}, "tools[0].name"),
    ({"input": [{"role": "user", "content": [{"type": "input_text", "text": "x"}]}],
      "reasoning": {"effort": "extreme"}}, "reasoning.effort"),
])
def test_errors_name_the_responses_parameter(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        chat_body(req(**{"input": "x", **fields}))
    assert caught.value.param == param and f"'{param}'" in caught.value.message


@pytest.mark.parametrize(("fields", "tool_choice", "text"), [
    ({}, "auto", {"format": {"type": "text"}}),
    ({"tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "tools": [FN_TOOL]},
     {"type": "function", "name": "get_weather"}, {"format": {"type": "text"}}),
    ({"text": {"format": {"type": "json_schema", "schema": {"type": "object"}}}}, "auto",
     {"format": {"type": "json_schema", "name": "response", "schema": {"type": "object"}}}),
    ({"text": {"format": {"type": "json_object"}}}, "auto", {"format": {"type": "json_object"}}),
])
def test_the_response_echoes_options_in_their_spec_shape(fields: dict[str, Any], tool_choice: Any,
                                                          text: dict[str, Any]) -> None:
    shell = response_shell(req(input="x", **fields), response_id="resp_1", created_at=1, model="m")
    assert shell["tool_choice"] == tool_choice and shell["text"] == text
    validate(shell, "Response")
