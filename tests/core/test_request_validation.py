"""Inbound OpenAI bodies: JSON decoding and model validation, with OpenAI-style `param` paths."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from cfai_cli.core.openai.base import param_path, parse_body, validate_request
from cfai_cli.core.openai.chat import ChatCompletionRequest
from cfai_cli.errors import InvalidRequest

USER = {"role": "user", "content": "hi"}
BASE: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [USER]}


@pytest.mark.parametrize("raw", [
    b"",
    b"{",
    b'{"model": "x",}',
    b"{'model': 'x'}",
    b"null",
    b"[]",
    b'[{"model": "x"}]',
    b'"x"',
    b"1",
    b"true",
    b'{"model": "\xff\xfe"}',
    b"\xc3\x28",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
])
def test_parse_body_rejects(raw: bytes) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_body(raw)
    err = info.value
    assert err.status == 400
    assert err.param is None
    assert err.to_openai()["error"]["code"] == "invalid_json"
    assert len(err.message) < 300


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"])
def test_parse_body_never_guesses_another_encoding(encoding: str) -> None:
    """The standard library would decode every one of these (json.loads detects UTF-16/32); JSON on the
    wire is UTF-8, so they are refused with a message that says so."""
    raw = json.dumps({"model": "gpt-4o-mini", "note": "héllo ☃"}).encode(encoding)
    assert json.loads(raw)["model"] == "gpt-4o-mini"  # what would happen without the check
    with pytest.raises(InvalidRequest, match="must be UTF-8") as info:
        parse_body(raw)
    assert info.value.status == 400 and info.value.code == "invalid_json"


def test_parse_body_accepts_a_utf8_bom_and_refuses_bad_utf8_clearly() -> None:
    assert parse_body(b'\xef\xbb\xbf{"model": "x"}') == {"model": "x"}
    with pytest.raises(InvalidRequest, match=r"must be UTF-8.*not valid UTF-8"):
        parse_body(b'{"model": "caf\xe9"}')
    with pytest.raises(InvalidRequest, match=r"must be UTF-8.*NUL"):
        parse_body(b'{"model": "x\x00"}')


@pytest.mark.parametrize(("raw", "expected"), [
    (b'{"model": "x"}', {"model": "x"}),
    ('{"model": "ü"}', {"model": "ü"}),
    ('{"model": "ü"}'.encode(), {"model": "ü"}),
    (b'  {"a": [1, {"b": null}]}\n', {"a": [1, {"b": None}]}),
])
def test_parse_body_accepts(raw: bytes | str, expected: dict[str, Any]) -> None:
    assert parse_body(raw) == expected


def body(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is ...:
            out.pop(key, None)
        else:
            out[key] = value
    return out


TOOL_TURN = [USER, {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                                         "function": {"name": "f", "arguments": "{}"}}]}]

# (id, body, expected param, whether it is a missing-parameter error)
INVALID: list[tuple[str, dict[str, Any], str, bool]] = [
    ("model missing", body(model=...), "model", True),
    ("model not a string", body(model=5), "model", False),
    ("messages missing", body(messages=...), "messages", True),
    ("messages not a list", body(messages="hi"), "messages", False),
    ("messages an object", body(messages={"role": "user", "content": "hi"}), "messages", False),
    ("messages empty", body(messages=[]), "messages", False),
    ("message not an object", body(messages=["hi"]), "messages[0]", False),
    ("role robot", body(messages=[{"role": "robot", "content": "hi"}]), "messages[0].role", False),
    ("role missing", body(messages=[{"content": "hi"}]), "messages[0].role", True),
    ("tool message without tool_call_id", body(messages=[*TOOL_TURN, {"role": "tool", "content": "ok"}]),
     "messages[2].tool_call_id", True),
    ("tool message with empty tool_call_id",
     body(messages=[*TOOL_TURN, {"role": "tool", "content": "ok", "tool_call_id": ""}]),
     "messages[2].tool_call_id", True),
    ("user message without content", body(messages=[{"role": "user"}]), "messages[0].content", True),
    ("system content null", body(messages=[{"role": "system", "content": None}, USER]), "messages[0].content", True),
    ("content a number", body(messages=[{"role": "user", "content": 5}]), "messages[0].content", False),
    ("text part text not a string", body(messages=[{"role": "user", "content": [{"type": "text", "text": 5}]}]),
     "messages[0].content[0].text", False),
    ("text part without text", body(messages=[{"role": "user", "content": [{"type": "text"}]}]),
     "messages[0].content[0].text", True),
    ("unknown part type", body(messages=[{"role": "user", "content": [{"type": "video", "video": "x"}]}]),
     "messages[0].content[0].type", False),
    ("part without type", body(messages=[{"role": "user", "content": [{"text": "x"}]}]),
     "messages[0].content[0].type", True),
    ("image url not a string",
     body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 5}}]}]),
     "messages[0].content[0].image_url.url", False),
    ("tool call without function", body(messages=[USER, {"role": "assistant", "tool_calls": [{"id": "c1"}]}]),
     "messages[1].tool_calls[0].function", True),
    ("temperature as a string", body(temperature="0.5"), "temperature", False),
    ("temperature too high", body(temperature=2.5), "temperature", False),
    ("temperature NaN", body(temperature=float("nan")), "temperature", False),
    ("top_p above 1", body(top_p=1.5), "top_p", False),
    ("presence_penalty below -2", body(presence_penalty=-3), "presence_penalty", False),
    ("n = 0", body(n=0), "n", False),
    ("n a float", body(n=1.5), "n", False),
    ("n a string", body(n="2"), "n", False),
    ("max_tokens 0", body(max_tokens=0), "max_tokens", False),
    ("max_tokens a bool", body(max_tokens=True), "max_tokens", False),
    ("max_completion_tokens negative", body(max_completion_tokens=-1), "max_completion_tokens", False),
    ("stream as a string", body(stream="true"), "stream", False),
    ("stream_options wrong type", body(stream_options={"include_usage": "yes"}), "stream_options.include_usage", False),
    ("stop list of 5", body(stop=["a", "b", "c", "d", "e"]), "stop", False),
    ("stop a number", body(stop=5), "stop", False),
    ("stop list with a number", body(stop=["a", 5]), "stop[1]", False),
    ("tool without a type", body(tools=[{"function": {"name": "f"}}]), "tools[0].type", True),
    ("tool type not a string", body(tools=[{"type": 3}]), "tools[0].type", False),
    ("custom tool without name", body(tools=[{"type": "custom", "custom": {}}]), "tools[0].custom.name", True),
    ("custom call in history without custom", body(messages=[
        USER, {"role": "assistant", "tool_calls": [{"id": "c1", "type": "custom"}]}]),
     "messages[1].tool_calls[0].custom", True),
    ("custom tool_choice without name", body(tools=[{"type": "custom", "custom": {"name": "f"}}],
                                             tool_choice={"type": "custom", "custom": {}}),
     "tool_choice.custom", False),
    ("tool name with a space", body(tools=[{"type": "function", "function": {"name": "a b"}}]),
     "tools[0].function.name", False),
    ("tool without function", body(tools=[{"type": "function"}]), "tools[0].function", True),
    ("tool_choice unknown string", body(tool_choice="sometimes"), "tool_choice", False),
    ("tool_choice function without name", body(tool_choice={"type": "function", "function": {}}),
     "tool_choice.function", False),
    ("response_format unknown type", body(response_format={"type": "xml"}), "response_format.type", False),
    ("json_schema without json_schema", body(response_format={"type": "json_schema"}), "response_format", False),
    ("reasoning_effort unknown", body(reasoning_effort="extreme"), "reasoning_effort", False),
    ("seed a float", body(seed=1.5), "seed", False),
]


@pytest.mark.parametrize(("data", "param", "missing"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_requests(data: dict[str, Any], param: str, missing: bool) -> None:
    with pytest.raises(InvalidRequest) as info:
        validate_request(ChatCompletionRequest, data)
    err = info.value
    assert err.param == param
    assert err.status == 400
    assert f"'{param}'" in err.message
    body_ = err.to_openai()["error"]
    assert body_["type"] == "invalid_request_error"
    assert body_["code"] == ("missing_required_parameter" if missing else "invalid_value")
    if missing:
        assert err.message.startswith("Missing required parameter")
    json.dumps(err.to_openai(), allow_nan=False)


def test_stop_list_too_long_says_why() -> None:
    with pytest.raises(InvalidRequest) as info:
        validate_request(ChatCompletionRequest, body(stop=["a", "b", "c", "d", "e"]))
    assert "4" in info.value.message


def test_invalid_json_values_are_reported_through_parse_body() -> None:
    data = parse_body(b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}')
    with pytest.raises(InvalidRequest) as info:
        validate_request(ChatCompletionRequest, data)
    assert info.value.param == "temperature"


VALID: list[tuple[str, dict[str, Any]]] = [
    ("minimal", body()),
    ("unknown top-level fields", body(foo={"bar": [1]}, options={"rejectIfBusy": True}, metadata={"k": "v"},
                                      store=False, service_tier="auto", prediction={"type": "content"})),
    ("unknown fields inside messages and tools", body(
        messages=[{"role": "user", "content": "hi", "x_extra": 1, "name": "bob"}],
        tools=[{"type": "function", "function": {"name": "f", "x": 1}, "extra": 2}],
        stream_options={"include_usage": True, "future": 1})),
    ("developer role and parts", body(messages=[
        {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "text", "text": "What?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}])),
    ("assistant with null content and tool calls, then tool", body(messages=[
        *TOOL_TURN, {"role": "tool", "tool_call_id": "c1", "content": "ok"}])),
    ("assistant without content", body(messages=[USER, {"role": "assistant"}])),
    ("integer temperature and big seed", body(temperature=1, seed=2**53, top_p=1, n=16)),
    ("stop of 4, stop empty", body(stop=["a", "b", "c", "d"])),
    ("null optionals", body(temperature=None, stop=None, tools=None, tool_choice=None, response_format=None)),
    ("named tool choice", body(tools=[{"type": "function", "function": {"name": "f"}}],
                               tool_choice={"type": "function", "function": {"name": "f"}})),
    ("json_schema without schema", body(response_format={"type": "json_schema", "json_schema": {"name": "x"}})),
    # Hosted tools are dropped later (core.translate.toolset), not refused.
    ("hosted and custom tools", body(tools=[{"type": "web_search"}, {"type": "retrieval"},
                                            {"type": "custom", "custom": {"name": "apply_patch"}}],
                                     tool_choice={"type": "custom", "custom": {"name": "apply_patch"}})),
    ("custom call in history", body(messages=[
        USER, {"role": "assistant", "content": None,
               "tool_calls": [{"id": "c1", "type": "custom", "custom": {"name": "f", "input": "x"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"}])),
]


@pytest.mark.parametrize("data", [c[1] for c in VALID], ids=[c[0] for c in VALID])
def test_valid_requests(data: dict[str, Any]) -> None:
    req = validate_request(ChatCompletionRequest, data)
    assert req.model == data["model"]
    assert len(req.messages) == len(data["messages"])


def test_unknown_fields_are_kept_not_refused() -> None:
    req = validate_request(ChatCompletionRequest, body(foo=1))
    assert req.model_extra == {"foo": 1}


@pytest.mark.parametrize(("loc", "path"), [
    (("model",), "model"),
    (("messages", 0, "role"), "messages[0].role"),
    (("messages", 3, "content", 1, "image_url", "url"), "messages[3].content[1].image_url.url"),
    (("stop", "str"), "stop"),
    (("stop", "list[str]", 1), "stop[1]"),
    (("tool_choice", "function-after[_has_name(), dict[str,str]]"), "tool_choice"),
])
def test_param_path(loc: tuple[int | str, ...], path: str) -> None:
    assert param_path(loc) == path


def test_the_chat_models_annotations_are_objects_and_the_answers_optional_keys_known() -> None:
    """core/openai/chat.py is the one module without `from __future__ import annotations` (its classes' annotations
    evaluated once by the interpreter, not compiled from text by pydantic at every start: docs/performance.md,
    "One-shot CLI round 9"). With text annotations Python 3.11's TypedDict cannot see a `NotRequired` key, so the
    answers' optional keys are the sign that the module still evaluates them."""
    from cfai_cli.core.openai import chat

    assert all(not isinstance(kind, str) for kind in chat.ChatCompletionRequest.__annotations__.values())
    assert chat.AssistantMessage.__optional_keys__ == {"tool_calls", "reasoning_content"}
    assert chat.ChatCompletionChunk.__optional_keys__ == {"usage"}
    assert chat.ToolCallDelta.__required_keys__ == {"index"}
    assert chat.Usage.__optional_keys__ == {"prompt_tokens_details", "completion_tokens_details"}
    # The same fields and validation as before: a request with every part's kind still validates.
    body = {**BASE, "messages": [{"role": "system", "content": "be brief"},
                                 {"role": "user", "content": [{"type": "text", "text": "hi"},
                                                              {"type": "image_url", "image_url": {"url": "data:,"}}]},
                                 {"role": "assistant", "content": None, "tool_calls": [
                                     {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                                 {"role": "tool", "tool_call_id": "c1", "content": "42"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}
    req = ChatCompletionRequest.model_validate(body)
    assert [m.role for m in req.messages] == ["system", "user", "assistant", "tool"]
    with pytest.raises(ValueError, match="needs a 'json_schema' object"):
        ChatCompletionRequest.model_validate({**BASE, "response_format": {"type": "json_schema"}})
