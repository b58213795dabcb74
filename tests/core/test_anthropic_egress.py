"""OpenAI chat -> Anthropic Messages (an Anthropic upstream): golden request bodies, the 400s, recorded
Messages answers and streams -> chat completions and chunks checked against the OpenAI spec, and a stream
split at every byte giving the same chunks."""

from __future__ import annotations

import json
from typing import Any

import anthropic.types as at
import pydantic
import pytest
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming

from cfai_cli.core.anthropic.models import MessagesRequest
from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.chat import ChatCompletionRequest
from cfai_cli.core.sse import SSEDecoder
from cfai_cli.core.translate.anthropic_egress import chat_names, from_message, to_messages_request
from cfai_cli.core.translate.anthropic_egress_stream import ChunkStream
from cfai_cli.errors import InvalidRequest
from tests import anthropic_upstream as rec
from tests.openai_schema import validate

EVENT = pydantic.TypeAdapter(at.RawMessageStreamEvent)
PARAMS = pydantic.TypeAdapter(MessageCreateParamsNonStreaming)
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object", "properties": {
                                                "city": {"type": "string"}}, "required": ["city"]}}}
USER = {"role": "user", "content": "hi"}


def body(**fields: Any) -> dict[str, Any]:
    """A chat body as the service hands it to a ChatUpstream: checked by the chat model, dumped."""
    raw = {"model": "claude-sonnet-4-5", "messages": [USER], **fields}
    req = validate_request(ChatCompletionRequest, raw)
    return req.model_dump(mode="json", by_alias=True, exclude_unset=True)


def messages_body(chat: dict[str, Any]) -> dict[str, Any]:
    """The translation, checked by the anthropic SDK's request type and by cfai's own Messages model."""
    out = to_messages_request(chat)
    PARAMS.validate_python(out)
    validate_request(MessagesRequest, out)
    return out


GOLDEN: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("plain: max_tokens defaults to 4096",
     body(),
     {"model": "claude-sonnet-4-5", "max_tokens": 4096, "messages": [{"role": "user", "content": [
         {"type": "text", "text": "hi"}]}]}),
    ("system and developer join; sampling; stop as a list; user id",
     body(messages=[{"role": "system", "content": "Be brief."}, {"role": "developer", "content": [
         {"type": "text", "text": "Use metric."}]}, USER], temperature=1.6, max_completion_tokens=300, max_tokens=9,
          stop="END", user="u-42", seed=3, presence_penalty=0.5, logit_bias={"1": 2}),
     {"model": "claude-sonnet-4-5", "system": "Be brief.\n\nUse metric.", "max_tokens": 300, "temperature": 1.0,
      "stop_sequences": ["END"], "metadata": {"user_id": "u-42"},
      "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}),
    ("top_p alone goes; with temperature only temperature",
     body(top_p=0.9, max_tokens=50, stop=["a", "b"]),
     {"model": "claude-sonnet-4-5", "max_tokens": 50, "top_p": 0.9, "stop_sequences": ["a", "b"],
      "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}),
    ("images: data URI -> base64, http URL -> url",
     body(messages=[{"role": "user", "content": [
         {"type": "text", "text": "Compare"},
         {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
         {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}]),
     {"model": "claude-sonnet-4-5", "max_tokens": 4096, "messages": [{"role": "user", "content": [
         {"type": "text", "text": "Compare"},
         {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
         {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}]}]}),
    ("tool history: tool_use from calls, consecutive tool results merged into one user turn, text after them",
     body(messages=[USER,
                    {"role": "assistant", "content": "Checking.", "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                                          "arguments": '{"city":"Oslo"}'}},
                        {"id": "toolu_2", "type": "function", "function": {"name": "get_weather",
                                                                           "arguments": '{"city":"Rome"}'}}]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "12 C"},
                    {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "25 C"}]},
                    {"role": "user", "content": "Which is warmer?"}],
          tools=[WEATHER], tool_choice="required", parallel_tool_calls=False),
     {"model": "claude-sonnet-4-5", "max_tokens": 4096,
      "tools": [{"name": "get_weather", "description": "Weather in a city", "input_schema": WEATHER[
          "function"]["parameters"]}],  # type: ignore[index]
      "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
      "messages": [
          {"role": "user", "content": [{"type": "text", "text": "hi"}]},
          {"role": "assistant", "content": [
              {"type": "text", "text": "Checking."},
              {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
              {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}}]},
          {"role": "user", "content": [
              {"type": "tool_result", "tool_use_id": "toolu_1", "content": "12 C"},
              {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "25 C"}]},
              {"type": "text", "text": "Which is warmer?"}]}]}),
    ("tool_choice: a named function; a tool without parameters gets an empty object schema",
     body(tools=[{"type": "function", "function": {"name": "now"}}],
          tool_choice={"type": "function", "function": {"name": "now"}}),
     {"model": "claude-sonnet-4-5", "max_tokens": 4096,
      "tools": [{"name": "now", "input_schema": {"type": "object", "properties": {}}}],
      "tool_choice": {"type": "tool", "name": "now"},
      "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}),
    ("tool_choice none; auto with parallel calls off",
     body(tools=[WEATHER], tool_choice="none"),
     {"model": "claude-sonnet-4-5", "max_tokens": 4096, "tool_choice": {"type": "none"},
      "tools": [{"name": "get_weather", "description": "Weather in a city",
                 "input_schema": WEATHER["function"]["parameters"]}],  # type: ignore[index]
      "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}),
    ("reasoning_effort medium: thinking on top of the default, sampling left out",
     body(reasoning_effort="medium", temperature=0.2),
     {"model": "claude-sonnet-4-5", "max_tokens": 4096 + 4096, "thinking": {"type": "enabled", "budget_tokens": 4096},
      "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}),
    ("reasoning_effort high within the client's limit",
     body(reasoning_effort="high", max_completion_tokens=3000),
     {"model": "claude-sonnet-4-5", "max_tokens": 3000, "thinking": {"type": "enabled", "budget_tokens": 2999},
      "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}),
    ("reasoning_effort with a limit too small to think: no thinking",
     body(reasoning_effort="low", max_tokens=500, temperature=0.3),
     {"model": "claude-sonnet-4-5", "max_tokens": 500, "temperature": 0.3,
      "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}),
    ("json_schema: an instruction in system; assistant reasoning and empty turns dropped",
     body(messages=[USER, {"role": "assistant", "content": "", "reasoning_content": "hmm"}, USER],
          response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}}),
     {"model": "claude-sonnet-4-5", "max_tokens": 4096,
      "system": 'Answer with only a JSON object, no other text. It must match this JSON schema:\n{"type": "object"}',
      "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "hi"}]}]}),
]


@pytest.mark.parametrize(("case", "chat", "expected"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_requests(case: str, chat: dict[str, Any], expected: dict[str, Any]) -> None:
    assert messages_body(chat) == expected


def test_stream_and_extra_fields_go_on() -> None:
    out = to_messages_request({**body(), "stream": True, "top_k": 5, "other": 1}, ["top_k"])
    assert out["stream"] is True and out["top_k"] == 5 and "other" not in out


@pytest.mark.parametrize(("chat", "param"), [
    (body(n=2), "n"),
    (body(tools=[{"type": "custom", "custom": {"name": "sql"}}]), "tools[0].type"),
    (body(messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {
        "data": "AAAA", "format": "wav"}}]}]), "messages[0].content[0].type"),
    (body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "data:image/png,raw"}}]}]), "messages[0].content[0].image_url.url"),
])
def test_what_anthropic_cannot_take_is_a_400_naming_the_parameter(chat: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        to_messages_request(chat)
    assert info.value.param == param and info.value.status == 400
    assert "Anthropic" in info.value.message or "image" in info.value.message


# ---- answers ---------------------------------------------------------------------------------------


def test_recorded_messages_are_the_sdks_shapes() -> None:
    for recorded in (rec.TEXT, rec.TOOL):
        at.Message.model_validate(recorded)
    for event in rec.TEXT_EVENTS + rec.TOOL_EVENTS + [rec.OVERLOADED_EVENT]:
        if event["type"] not in ("error", "ping"):  # not in the SDK's union: its stream drops them
            EVENT.validate_python(event)


def test_a_text_message_is_a_chat_completion() -> None:
    done = from_message(rec.TEXT, created=1_700_000_000)
    validate(done, "CreateChatCompletionResponse")
    assert done["id"] == "chatcmpl-msg_01XFDUDYJgAACzvnptvVoYEL" and done["model"] == rec.MODEL
    assert done["choices"][0]["message"]["content"] == "Hello! How can I help?"
    assert done["choices"][0]["finish_reason"] == "stop"
    assert done["usage"] == {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18,
                             "prompt_tokens_details": {"cached_tokens": 0}}


def test_thinking_text_and_tool_use_become_reasoning_content_and_tool_calls() -> None:
    done = from_message(rec.TOOL, created=1)
    validate(done, "CreateChatCompletionResponse")
    answer = done["choices"][0]["message"]
    assert answer["content"] == "I'll check the weather."
    assert answer["reasoning_content"].startswith("The user wants the weather")
    assert answer["tool_calls"] == [{"id": "toolu_01A09q90qw90lq917835lq9", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"location": "San Francisco, CA", "unit": "celsius"}'}}]
    assert done["choices"][0]["finish_reason"] == "tool_calls"
    # Cache reads and writes are prompt tokens; reads are the cached ones.
    assert done["usage"] == {"prompt_tokens": 594, "completion_tokens": 95, "total_tokens": 689,
                             "prompt_tokens_details": {"cached_tokens": 200}}


@pytest.mark.parametrize(("stop_reason", "finish"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("refusal", "content_filter"), ("pause_turn", "stop")])
def test_stop_reasons(stop_reason: str, finish: str) -> None:
    done = from_message(rec.message([{"type": "text", "text": "x"}], stop_reason), created=1)
    validate(done, "CreateChatCompletionResponse")
    assert done["choices"][0]["finish_reason"] == finish


def test_a_tool_only_answer_has_null_content() -> None:
    done = from_message(rec.message([{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}], "tool_use"),
                        created=1)
    validate(done, "CreateChatCompletionResponse")
    assert done["choices"][0]["message"]["content"] is None


# ---- streams ---------------------------------------------------------------------------------------


def chunks_of(raw: bytes, cuts: list[int]) -> tuple[list[dict[str, Any]], bool]:
    """Decode `raw` cut at `cuts` and translate each event (the client's path, without the network)."""
    decoder, stream, out = SSEDecoder(), ChunkStream(created=7), []
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    for piece in pieces:
        for event in decoder.decode(piece):
            out += stream.feed(event.event or "", json.loads(event.data))
    for event in decoder.flush():
        out += stream.feed(event.event or "", json.loads(event.data))
    return out, stream.done


def test_a_text_stream_becomes_valid_chunks_with_usage_last() -> None:
    chunks, done = chunks_of(rec.sse(*rec.TEXT_EVENTS), [])
    assert done
    for chunk in chunks:
        validate(chunk, "CreateChatCompletionStreamResponse")
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == \
        "Hello! Grüß dich ✓"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 15
    assert chunks[-1]["usage"]["prompt_tokens"] == 25
    assert {c["id"] for c in chunks} == {"chatcmpl-msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"}
    assert {c["model"] for c in chunks} == {rec.MODEL}


def test_a_tool_stream_gives_reasoning_and_tool_call_deltas() -> None:
    chunks, done = chunks_of(rec.sse(*rec.TOOL_EVENTS), [])
    assert done
    for chunk in chunks:
        validate(chunk, "CreateChatCompletionStreamResponse")
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == "Weather tool needed."
    assert "".join(d.get("content") or "" for d in deltas) == "Okay, let's check"
    calls: dict[int, dict[str, str]] = {}
    for delta in deltas:
        for call in delta.get("tool_calls") or []:
            got = calls.setdefault(call["index"], {"arguments": ""})
            if "id" in call:
                assert call["type"] == "function"
                got.update(id=call["id"], name=call["function"]["name"])
            got["arguments"] += call["function"]["arguments"]
    assert calls == {0: {"id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather",
                         "arguments": '{"location": "San Francisco, CA"}'},
                     1: {"id": "toolu_02NoArgs", "name": "get_time", "arguments": "{}"}}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] == 89


def test_a_stream_split_at_every_byte_gives_the_same_chunks() -> None:
    raw = rec.sse(*rec.TOOL_EVENTS[:8], *rec.TEXT_EVENTS[3:5], *rec.TOOL_EVENTS[8:])
    whole, _ = chunks_of(raw, [])
    for cut in range(1, len(raw)):
        assert chunks_of(raw, [cut]) == (whole, True), cut


def test_a_stream_without_message_stop_is_not_done() -> None:
    _, done = chunks_of(rec.sse(*rec.TEXT_EVENTS[:-1]), [])
    assert not done


def test_names_anthropic_refuses_are_sent_changed_and_mapped_back() -> None:
    chat = body(tools=[{"type": "function", "function": {"name": "files.read"}}, WEATHER],
                tool_choice={"type": "function", "function": {"name": "files.read"}},
                messages=[USER, {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {
                    "name": "files.read", "arguments": "{}"}}]}, {"role": "tool", "tool_call_id": "call_1",
                                                                  "content": "x"}])
    out = messages_body(chat)
    sent = out["tools"][0]["name"]
    assert sent.startswith("files_read_") and sent == out["tool_choice"]["name"] == out["messages"][1]["content"][0][
        "name"]
    assert out["tools"][1]["name"] == "get_weather"
    names = chat_names(chat)
    assert names == {sent: "files.read"}
    done = from_message(rec.message([{"type": "tool_use", "id": "toolu_1", "name": sent, "input": {}}], "tool_use"),
                        created=1, names=names)
    assert done["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "files.read"
    stream = ChunkStream(created=1, names=names)
    stream.feed("message_start", rec.TOOL_EVENTS[0])
    started = stream.feed("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
        "type": "tool_use", "id": "toolu_1", "name": sent, "input": {}}})
    assert started[0]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"] == "files.read"


def test_no_thinking_in_a_tool_loop_it_could_not_replay() -> None:
    loop = [USER, {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {
        "name": "get_weather", "arguments": "{}"}}]}, {"role": "tool", "tool_call_id": "call_1", "content": "x"}]
    assert "thinking" not in messages_body(body(messages=loop, tools=[WEATHER], reasoning_effort="high"))
    after = [*loop, {"role": "assistant", "content": "Sunny."}, {"role": "user", "content": "thanks"}]
    assert messages_body(body(messages=after, tools=[WEATHER], reasoning_effort="high"))["thinking"] == {
        "type": "enabled", "budget_tokens": 16384}
