"""Anthropic Messages requests: validation (lenient on unknown fields, 400s naming the JSON path) and the chat
request each one becomes (golden tables), written from Anthropic's docs and what Claude Code sends."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cfai_cli.core.anthropic.models import CountTokensRequest, MessagesRequest
from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.tokens import TOKENS_PER_CONVERSATION, TOKENS_PER_MESSAGE, estimate_tokens
from cfai_cli.core.translate.anthropic_in import (
    DOCUMENT_ERROR,
    AnthropicPlan,
    count_input_tokens,
    function_name,
    to_chat_request,
)
from cfai_cli.errors import InvalidRequest

PNG = "iVBORw0KGgo="
SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}

# What Claude Code 2.x sends: system blocks with cache_control, a system-reminder text block before the prompt,
# tools with cache_control, server tools, metadata, thinking, and fields cfai has never heard of.
CLAUDE_CODE = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 32000,
    "system": [
        {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
        {"type": "text", "text": "Use the tools to help the user.", "cache_control": {"type": "ephemeral"}},
    ],
    "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>Today is 2026-12-01.</system-reminder>"},
            {"type": "text", "text": "Read README.md", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        ]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "The user wants the file.", "signature": "EqQBCkYIBxgCKkA"},
            {"type": "text", "text": "Reading it."},
            {"type": "tool_use", "id": "toolu_01A", "name": "Read", "input": {"path": "README.md"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01A", "content": [{"type": "text", "text": "# cfai"}],
             "cache_control": {"type": "ephemeral"}},
        ]},
    ],
    "tools": [
        {"name": "Read", "description": "Read a file", "input_schema": SCHEMA, "cache_control": {"type": "ephemeral"}},
        {"name": "Bash", "input_schema": {"type": "object", "properties": {}}},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
        {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
    ],
    "tool_choice": {"type": "auto"},
    "metadata": {"user_id": "user_abc_account_1_session_2"},
    "thinking": {"type": "enabled", "budget_tokens": 10000},
    "stream": True,
    "temperature": 1,
    "context_management": {"edits": []},
    "betas_unknown_field": {"x": 1},
}

CLAUDE_CODE_CHAT = {
    "model": "claude-sonnet-4-6",
    "messages": [
        {"role": "system", "content": "You are Claude Code, Anthropic's official CLI for Claude.\n"
                                      "Use the tools to help the user."},
        {"role": "user", "content": "<system-reminder>Today is 2026-12-01.</system-reminder>\nRead README.md"},
        {"role": "assistant", "content": "Reading it.", "tool_calls": [
            {"id": "toolu_01A", "type": "function",
             "function": {"name": "Read", "arguments": '{"path": "README.md"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "# cfai"},
    ],
    "max_tokens": 32000,
    "stream": True,
    "stream_options": {"include_usage": True},
    "tools": [
        {"type": "function", "function": {"name": "Read", "description": "Read a file", "parameters": SCHEMA}},
        {"type": "function", "function": {"name": "Bash", "description": "Bash",
                                          "parameters": {"type": "object", "properties": {}}}},
    ],
    "tool_choice": "auto",
    "temperature": 1.0,
    "reasoning_effort": "medium",
    "user": "user_abc_account_1_session_2",
}


def plan_for(body: dict[str, Any], *, stream: bool = False) -> AnthropicPlan:
    return to_chat_request(validate_request(MessagesRequest, body), stream=stream)


def chat_json(plan: AnthropicPlan) -> dict[str, Any]:
    return plan.chat.model_dump(mode="json", exclude_none=True, by_alias=True)


def test_claude_code_request() -> None:
    plan = plan_for(CLAUDE_CODE, stream=True)
    assert chat_json(plan) == CLAUDE_CODE_CHAT
    assert plan.dropped_tools == ["web_search_20250305", "text_editor_20250728"]
    assert plan.model == "claude-sonnet-4-6"
    assert plan.stop_sequences == ()


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def body(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "claude-haiku-4-5", "max_tokens": 100, "messages": list(messages), **extra}


CASES: list[tuple[str, dict[str, Any], list[dict[str, Any]]]] = [
    ("plain string", body(user("Hi")), [{"role": "user", "content": "Hi"}]),
    ("system string + a system turn joined to it, first",
     body(user("Hi"), {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
          {"role": "assistant", "content": "Hello"}, system="You help."),
     [{"role": "system", "content": "You help.\n\nBe brief."}, {"role": "user", "content": "Hi"},
      {"role": "assistant", "content": "Hello"}]),
    ("images: base64 -> data URI, url kept",
     body(user([{"type": "text", "text": "Compare"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}}])),
     [{"role": "user", "content": [
         {"type": "text", "text": "Compare"},
         {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
         {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}}]}]),
    ("parallel tool loop: tool messages first, then the turn's text; errors marked; empty filled",
     body(user("Weather?"),
          {"role": "assistant", "content": [
              {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
              {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Oslo"}}]},
          user([{"type": "text", "text": "Also, be quick."},
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "12C"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "timeout", "is_error": True},
                {"type": "tool_result", "tool_use_id": "toolu_3"}])),
     [{"role": "user", "content": "Weather?"},
      {"role": "assistant", "tool_calls": [
          {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
          {"id": "toolu_2", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}]},
      {"role": "tool", "tool_call_id": "toolu_1", "content": "12C"},
      {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: timeout"},
      {"role": "tool", "tool_call_id": "toolu_3", "content": "(no output)"},
      {"role": "user", "content": "Also, be quick."}]),
    ("images in a tool result follow as a user message",
     body(user("Shot?"),
          {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_9", "name": "screenshot", "input": {}}]},
          user([{"type": "tool_result", "tool_use_id": "toolu_9", "content": [
              {"type": "text", "text": "taken"},
              {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG}}]}])),
     [{"role": "user", "content": "Shot?"},
      {"role": "assistant", "tool_calls": [
          {"id": "toolu_9", "type": "function", "function": {"name": "screenshot", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "toolu_9", "content": "taken"},
      {"role": "user", "content": [
          {"type": "text", "text": "(Images returned by tool call toolu_9:)"},
          {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{PNG}"}}]}]),
    ("thinking-only and server-tool blocks in history are dropped",
     body(user("Search"),
          {"role": "assistant", "content": [
              {"type": "redacted_thinking", "data": "xyz"},
              {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}},
              {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []}]},
          {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"},
                                            {"type": "text", "text": "Found it."}]},
          user("Thanks")),
     [{"role": "user", "content": "Search"}, {"role": "assistant", "content": "Found it."},
      {"role": "user", "content": "Thanks"}]),
]


@pytest.mark.parametrize(("name", "anthropic", "messages"), CASES, ids=[c[0] for c in CASES])
def test_messages(name: str, anthropic: dict[str, Any], messages: list[dict[str, Any]]) -> None:
    assert chat_json(plan_for(anthropic))["messages"] == messages


@pytest.mark.parametrize(("choice", "tool_choice", "parallel"), [
    ({"type": "auto"}, "auto", None),
    ({"type": "auto", "disable_parallel_tool_use": True}, "auto", False),
    ({"type": "any"}, "required", None),
    ({"type": "any", "disable_parallel_tool_use": True}, "required", False),
    ({"type": "tool", "name": "weather"}, {"type": "function", "function": {"name": "weather"}}, None),
    ({"type": "none"}, None, None),
    (None, None, None),
])
def test_tool_choice(choice: dict[str, Any] | None, tool_choice: Any, parallel: bool | None) -> None:
    extra: dict[str, Any] = {"tools": [{"name": "weather", "description": "d", "input_schema": SCHEMA}]}
    if choice is not None:
        extra["tool_choice"] = choice
    chat = chat_json(plan_for(body(user("Hi"), **extra)))
    assert chat.get("tool_choice") == tool_choice
    assert chat.get("parallel_tool_calls") == parallel
    # "none" offers no tools at all: some Workers AI models call a tool they are shown whatever the choice says.
    assert ("tools" in chat) == (choice is None or choice["type"] != "none")


def test_forcing_a_server_tool_leaves_the_choice_to_the_model() -> None:
    plan = plan_for(body(user("News?"), tools=[{"type": "web_search_20250305", "name": "web_search"},
                                               {"name": "weather", "input_schema": SCHEMA}],
                         tool_choice={"type": "tool", "name": "web_search"}))
    assert chat_json(plan)["tool_choice"] == "auto" and plan.dropped_tools == ["web_search_20250305"]


def test_settings_and_stop_sequences() -> None:
    plan = plan_for(body(user("Count"), max_tokens=7, temperature=0.2, top_p=0.9, top_k=40,
                         stop_sequences=["END", "", "\n\nHuman:"], service_tier="auto"), stream=False)
    chat = chat_json(plan)
    assert {k: chat[k] for k in ("max_tokens", "temperature", "top_p", "stream")} == {
        "max_tokens": 7, "temperature": 0.2, "top_p": 0.9, "stream": False}
    assert "stop" not in chat and "stream_options" not in chat and "reasoning_effort" not in chat
    assert plan.stop_sequences == ("END", "\n\nHuman:")


@pytest.mark.parametrize(("budget", "effort"), [(1024, "low"), (8000, "medium"), (16384, "high"), (None, None)])
def test_thinking_budget(budget: int | None, effort: str | None) -> None:
    thinking = {"type": "enabled", "budget_tokens": budget} if budget else {"type": "disabled"}
    assert chat_json(plan_for(body(user("Hi"), thinking=thinking))).get("reasoning_effort") == effort


def test_long_tool_names_are_shortened_and_mapped_back() -> None:
    long = "mcp__" + "very_long_server_name_" * 3 + "tool"
    assert 64 < len(long) <= 128
    plan = plan_for(body(user("Hi"), {"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_1", "name": long, "input": {}}]}, user([
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]),
        tools=[{"name": long, "input_schema": SCHEMA}], tool_choice={"type": "tool", "name": long}))
    chat = chat_json(plan)
    short = chat["tools"][0]["function"]["name"]
    assert len(short) <= 64 and short == function_name(long)
    assert chat["messages"][1]["tool_calls"][0]["function"]["name"] == short
    assert chat["tool_choice"] == {"type": "function", "function": {"name": short}}
    assert plan.anthropic_name(short) == long and plan.anthropic_name("other") == "other"


# ---- validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("bad", "param"), [
    ({"model": "m", "messages": [user("x")]}, "max_tokens"),
    (body(user("x"), max_tokens=0), "max_tokens"),
    (body(user("x"), max_tokens="100"), "max_tokens"),
    (body(), "messages"),
    (body({"role": "bot", "content": "x"}), "messages[0].role"),
    (body(user([{"text": "no type"}])), "messages[0].content[0].type"),
    (body(user([{"type": "image", "source": {"type": "base64", "data": PNG}}])),
     "messages[0].content[0].source.media_type"),
    (body(user([{"type": "image", "source": {"type": "ftp"}}])), "messages[0].content[0].source.type"),
    (body({"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": "x"}]}),
     "messages[0].content[0].input"),
    (body(user("x"), tools=[{"name": "a"}]), "tools[0].input_schema"),
    (body(user("x"), tool_choice={"type": "sometimes"}), "tool_choice.type"),
    (body(user("x"), tool_choice={"type": "tool"}), "tool_choice.name"),
    (body(user("x"), temperature=1.5), "temperature"),
    (body(user("x"), system=[{"type": "image"}]), "system[0].type"),
])
def test_invalid_bodies_name_the_parameter(bad: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        plan_for(bad)
    assert caught.value.param == param
    assert caught.value.status == 400


@pytest.mark.parametrize(("bad", "param", "words"), [
    (body(user([{"type": "text", "text": "Summarise"},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
                 "cache_control": {"type": "ephemeral"}}])), "messages[0].content[1].type", DOCUMENT_ERROR),
    (body(user([{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "document", "source": {}}]}])),
     "messages[0].content[0].content[0].type", DOCUMENT_ERROR),
    (body(user([{"type": "image", "source": {"type": "file", "file_id": "file_1"}}])),
     "messages[0].content[0].source.type", "Files API"),
    (body(user([{"type": "hologram"}])), "messages[0].content[0].type", "'hologram'"),
    (body(user([{"type": "tool_use", "id": "t", "name": "n", "input": {}}])), "messages[0].content[0].type",
     "assistant turns"),
    (body(user("x"), tools=[{"name": "a", "input_schema": SCHEMA}], tool_choice={"type": "tool", "name": "b"}),
     "tool_choice.name", "'b'"),
    (body({"role": "assistant", "content": [{"type": "thinking", "thinking": "x", "signature": "s"}]}),
     "messages", "nothing a model can read"),
])
def test_unsupported_content_is_a_clear_400(bad: dict[str, Any], param: str, words: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        plan_for(bad)
    assert (caught.value.param, caught.value.status) == (param, 400)
    assert words in caught.value.message


def test_count_tokens_body_needs_no_max_tokens() -> None:
    req = validate_request(CountTokensRequest, {k: v for k, v in CLAUDE_CODE.items() if k != "max_tokens"})
    with pytest.raises(InvalidRequest):
        validate_request(MessagesRequest, {k: v for k, v in CLAUDE_CODE.items() if k != "max_tokens"})
    counted = count_input_tokens(req, "@cf/meta/llama-4-scout-17b-16e-instruct")
    assert counted == count_input_tokens(validate_request(MessagesRequest, CLAUDE_CODE), "any")


def test_count_tokens_counts_system_messages_and_tools() -> None:
    def words(text: str) -> int:
        return len(text.split())

    plain = body(user("one two three"), system="four five")
    assert count_input_tokens(validate_request(CountTokensRequest, plain), "m", count=words) == (
        TOKENS_PER_CONVERSATION + 2 * TOKENS_PER_MESSAGE + 3 + 2)
    tool = {"name": "lookup", "description": "Find a thing", "input_schema": SCHEMA}
    with_tools = validate_request(CountTokensRequest, {**plain, "tools": [tool]})
    schema_text = json.dumps([{"name": "lookup", "description": "Find a thing", "parameters": SCHEMA}])
    assert count_input_tokens(with_tools, "m", count=words) == (
        TOKENS_PER_CONVERSATION + 2 * TOKENS_PER_MESSAGE + 5 + words(schema_text))
    # The default counter is /v1/tokenize's estimator.
    assert count_input_tokens(with_tools, "m") == (TOKENS_PER_CONVERSATION + 2 * TOKENS_PER_MESSAGE
                                                  + estimate_tokens("one two three") + estimate_tokens("four five")
                                                  + estimate_tokens(schema_text))


@pytest.mark.parametrize(("stops", "param"), [(["x"] * 65, "stop_sequences"), (["x" * 1001], "stop_sequences[0]")])
def test_stop_sequences_are_bounded(stops: list[str], param: str) -> None:
    """cfai scans the streamed text for each stop sequence itself: their number and length are bounded (a 400)."""
    base = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    validate_request(MessagesRequest, {**base, "stop_sequences": ["x"] * 64})
    with pytest.raises(InvalidRequest) as caught:
        validate_request(MessagesRequest, {**base, "stop_sequences": stops})
    assert caught.value.param == param and caught.value.status == 400
