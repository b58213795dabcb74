"""Chat completions -> Anthropic messages, and CfaiError -> Anthropic error bodies, each checked against the
anthropic SDK's own pydantic types (what its users parse)."""

from __future__ import annotations

from typing import Any

import anthropic.types as at
import pytest

from cfai_cli.core.anthropic.models import MessagesRequest
from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.chat import ChatCompletion
from cfai_cli.core.translate.anthropic_in import AnthropicPlan, function_name, to_chat_request, to_message
from cfai_cli.core.translate.anthropic_out import THINKING_SIGNATURE, tool_use_id
from cfai_cli.errors import (
    AuthenticationError,
    CfaiError,
    ConfigError,
    InvalidRequest,
    MethodNotAllowed,
    ModelNotFound,
    Overloaded,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    RequestTimeout,
    RequestTooLarge,
    ToolCallFailed,
    UnsupportedMediaType,
    UpstreamError,
    UpstreamTimeout,
)

LONG = "mcp__" + "server_" * 10 + "tool"


def plan(**extra: Any) -> AnthropicPlan:
    body = {"model": "claude-sonnet-4-5-20250929", "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}],
            "tools": [{"name": "weather", "input_schema": {"type": "object"}},
                      {"name": LONG, "input_schema": {"type": "object"}}], **extra}
    return to_chat_request(validate_request(MessagesRequest, body), stream=False)


def completion(content: str | None, *, finish: str = "stop", reasoning: str | None = None,
               calls: list[tuple[str, str, str]] = (), usage: dict[str, Any] | None = None) -> ChatCompletion:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = [{"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                                 for i, n, a in calls]
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "@cf/meta/llama-4-scout",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],  # type: ignore[typeddict-item]
            "usage": usage or {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39}}


def message(chat: ChatCompletion, p: AnthropicPlan | None = None) -> dict[str, Any]:
    out = to_message(chat, p or plan(), message_id="msg_01")
    at.Message.model_validate(out)  # what the anthropic SDK parses
    return out


def test_text_answer() -> None:
    assert message(completion("Hello!")) == {
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "Hello!"}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 30, "output_tokens": 9, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 0, "service_tier": "standard"}}


def test_thinking_text_and_tool_calls_in_order() -> None:
    out = message(completion("Let me check.", finish="tool_calls", reasoning="Need the weather tool.", calls=[
        ("call_abc", "weather", '{"city": "Paris"}'), ("toolu_keep", "weather", "not json"),
        ("call_x", "weather", "[1, 2]")]))
    sdk = at.Message.model_validate(out)
    assert [b.type for b in sdk.content] == ["thinking", "text", "tool_use", "tool_use", "tool_use"]
    assert out["content"][0] == {"type": "thinking", "thinking": "Need the weather tool.",
                                 "signature": THINKING_SIGNATURE}
    assert out["content"][2] == {"type": "tool_use", "id": "toolu_abc", "name": "weather", "input": {"city": "Paris"}}
    assert out["content"][3]["id"] == "toolu_keep" and out["content"][3]["input"] == {}
    assert out["content"][4]["input"] == {}  # a JSON array is not an object
    assert out["stop_reason"] == "tool_use"


def test_long_tool_name_comes_back_as_the_client_wrote_it() -> None:
    p = plan()
    short = function_name(LONG)
    assert short != LONG
    out = message(completion(None, finish="tool_calls", calls=[("call_1", short, "{}")]), p)
    assert out["content"] == [{"type": "tool_use", "id": "toolu_1", "name": LONG, "input": {}}]


@pytest.mark.parametrize(("call_id", "expected"), [
    ("call_abc123", "toolu_abc123"),
    ("toolu_01XYZ", "toolu_01XYZ"),
    ("chatcmpl-tool-9f8e", "toolu_chatcmpl-tool-9f8e"),
    ("call 1/2", "toolu_call12"),
])
def test_tool_use_ids_are_stable_and_valid(call_id: str, expected: str) -> None:
    assert tool_use_id(call_id) == expected == tool_use_id(call_id)


def test_tool_use_id_of_unusable_id_is_a_hash() -> None:
    made = tool_use_id("call_/")
    assert made.startswith("toolu_") and len(made) == 30 and made == tool_use_id("call_/") != tool_use_id("//")


@pytest.mark.parametrize(("finish", "calls", "reason"), [
    ("stop", [], "end_turn"),
    ("length", [], "max_tokens"),
    ("tool_calls", [("call_1", "weather", "{}")], "tool_use"),
    ("stop", [("call_1", "weather", "{}")], "tool_use"),
    ("content_filter", [], "refusal"),
])
def test_stop_reasons(finish: str, calls: list[tuple[str, str, str]], reason: str) -> None:
    assert message(completion("ok", finish=finish, calls=calls))["stop_reason"] == reason


@pytest.mark.parametrize(("text", "stops", "cut", "hit"), [
    ("one two END three", ["END"], "one two ", "END"),
    ("abcdef", ["cdef", "de"], "abc", "de"),  # "de" is completed first, as generation would have stopped
    ("xx###yy", ["##", "###"], "xx", "##"),
    ("no stop here", ["STOP"], "no stop here", None),
    ("END", ["END"], "", "END"),
])
def test_stop_sequences_cut_the_text(text: str, stops: list[str], cut: str, hit: str | None) -> None:
    out = message(completion(text, finish="length", calls=[("call_1", "weather", "{}")]),
                  plan(stop_sequences=stops))
    texts = [b["text"] for b in out["content"] if b["type"] == "text"]
    assert texts == ([cut] if cut else [])
    assert out["stop_sequence"] == hit
    if hit:
        assert out["stop_reason"] == "stop_sequence"
        assert all(b["type"] != "tool_use" for b in out["content"])  # nothing after the stop was generated


def test_cached_prompt_tokens_are_reported_apart() -> None:
    out = message(completion("hi", usage={"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105,
                                          "prompt_tokens_details": {"cached_tokens": 60}}))
    assert out["usage"]["input_tokens"] == 40 and out["usage"]["cache_read_input_tokens"] == 60


# ---- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("error", "kind", "status"), [
    (InvalidRequest("bad", param="x"), "invalid_request_error", 400),
    (UnsupportedMediaType("xml?"), "invalid_request_error", 415),
    (RequestTimeout("slow body"), "invalid_request_error", 408),
    (MethodNotAllowed("GET?"), "invalid_request_error", 405),
    (AuthenticationError("who?"), "authentication_error", 401),
    (PermissionDenied("no"), "permission_error", 403),
    (ModelNotFound("gone"), "not_found_error", 404),
    (RateLimited("slow down", upstream_code=429), "rate_limit_error", 429),
    (QuotaExceeded("out of neurons", upstream_code=3036), "rate_limit_error", 429),
    (RateLimited("Capacity temporarily exceeded", upstream_code=3040), "overloaded_error", 529),
    (RateLimited("Capacity temporarily exceeded", upstream_code="3040"), "overloaded_error", 529),
    (Overloaded("the proxy is busy"), "overloaded_error", 529),
    (UpstreamError("boom"), "api_error", 502),
    (ToolCallFailed("no call"), "api_error", 502),
    (ConfigError("no token"), "api_error", 500),
    (CfaiError("bug"), "api_error", 500),
    (UpstreamTimeout("late"), "timeout_error", 504),
])
def test_anthropic_error_bodies(error: CfaiError, kind: str, status: int) -> None:
    body = error.to_anthropic()
    assert body == {"type": "error", "error": {"type": kind, "message": error.message}}
    assert error.anthropic_status == status
    at.ErrorResponse.model_validate(body)


def test_request_too_large_uses_anthropics_documented_type() -> None:
    error = RequestTooLarge("too big")
    assert error.to_anthropic()["error"]["type"] == "request_too_large" and error.anthropic_status == 413
