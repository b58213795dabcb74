"""Chat chunks -> Anthropic stream events: every event checked against the anthropic SDK's event types, the
whole stream folded by the SDK's own accumulator, and stop sequences held back whatever the chunking."""

from __future__ import annotations

from typing import Any

import anthropic.types as at
import pydantic
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from hypothesis import given, settings
from hypothesis import strategies as st

from cfai_cli.core.anthropic.models import MessagesRequest
from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.translate.anthropic_in import AnthropicPlan, MessageStream, function_name, to_chat_request
from cfai_cli.core.translate.anthropic_out import THINKING_SIGNATURE
from cfai_cli.errors import RateLimited

EVENT = pydantic.TypeAdapter(at.RawMessageStreamEvent)
LONG = "mcp__" + "server_" * 10 + "tool"


def plan(stops: list[str] | None = None) -> AnthropicPlan:
    body: dict[str, Any] = {"model": "claude-opus-4-6", "max_tokens": 500,
                            "messages": [{"role": "user", "content": "Hi"}],
                            "tools": [{"name": "weather", "input_schema": {"type": "object"}},
                                      {"name": LONG, "input_schema": {"type": "object"}}]}
    if stops:
        body["stop_sequences"] = stops
    return to_chat_request(validate_request(MessagesRequest, body), stream=True)


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None,
          usage: dict[str, int] | None = None) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    out: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                           "choices": choices}
    if usage is not None:
        out["usage"] = usage
    return out


def call(index: int, *, id: str | None = None, name: str | None = None, args: str | None = None) -> dict[str, Any]:
    fn: dict[str, str] = {}
    if name is not None:
        fn["name"] = name
    if args is not None:
        fn["arguments"] = args
    out: dict[str, Any] = {"index": index, "function": fn}
    if id is not None:
        out.update(id=id, type="function")
    return out


def run(stream: MessageStream, chunks: list[dict[str, Any]],
        usage: dict[str, int] | None = None) -> list[dict[str, Any]]:
    events = stream.start()
    for c in chunks:
        events += stream.feed(c)
        if stream.done:
            break
    events += stream.finish(usage)
    for event in events:
        if event["type"] != "ping":  # Anthropic sends pings too; its SDK skips them before parsing
            EVENT.validate_python(event)  # each other one is a valid Anthropic stream event
    return events


def accumulate(events: list[dict[str, Any]]) -> at.Message:
    snapshot = None
    bufs: dict[int, bytes] = {}
    for event in events:
        if event["type"] == "ping":
            continue
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=bufs)  # type: ignore[arg-type]
    assert snapshot is not None
    return at.Message.model_validate(snapshot.model_dump())


USAGE = {"prompt_tokens": 21, "completion_tokens": 34, "total_tokens": 55}
THINK_TEXT_TOOLS = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"reasoning_content": "The user "}),
    chunk({"reasoning_content": "wants weather."}),
    chunk({"content": "Checking"}),
    chunk({"content": " now."}),
    chunk({"tool_calls": [call(0, id="call_a1", name="weather", args="")]}),
    chunk({"tool_calls": [call(0, args='{"city": ')]}),
    chunk({"tool_calls": [call(0, args='"Paris"}')]}),
    chunk({"tool_calls": [call(1, id="call_b2", name=function_name(LONG), args='{"q": 1}')]}),
    chunk({}, finish="tool_calls"),
    chunk(usage=USAGE),
]


def test_thinking_text_and_tools_stream() -> None:
    events = run(MessageStream(plan(), message_id="msg_9", input_tokens_estimate=18), THINK_TEXT_TOOLS)
    assert [(e["type"], e.get("index"), (e.get("delta") or e.get("content_block") or {}).get("type"))
            for e in events] == [
        ("message_start", None, None), ("ping", None, None),
        ("content_block_start", 0, "thinking"),
        ("content_block_delta", 0, "thinking_delta"), ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "signature_delta"), ("content_block_stop", 0, None),
        ("content_block_start", 1, "text"),
        ("content_block_delta", 1, "text_delta"), ("content_block_delta", 1, "text_delta"),
        ("content_block_stop", 1, None),
        ("content_block_start", 2, "tool_use"),
        ("content_block_delta", 2, "input_json_delta"), ("content_block_delta", 2, "input_json_delta"),
        ("content_block_stop", 2, None),
        ("content_block_start", 3, "tool_use"), ("content_block_delta", 3, "input_json_delta"),
        ("content_block_stop", 3, None),
        ("message_delta", None, None), ("message_stop", None, None)]
    assert events[0]["message"]["usage"]["input_tokens"] == 18
    assert events[-2] == {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                          "usage": {"input_tokens": 21, "output_tokens": 34, "cache_read_input_tokens": 0}}
    message = accumulate(events)
    assert message.model_dump(exclude_none=True) == {
        "id": "msg_9", "type": "message", "role": "assistant", "model": "claude-opus-4-6",
        "content": [
            {"type": "thinking", "thinking": "The user wants weather.", "signature": THINKING_SIGNATURE},
            {"type": "text", "text": "Checking now."},
            {"type": "tool_use", "id": "toolu_a1", "name": "weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_b2", "name": LONG, "input": {"q": 1}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 21, "output_tokens": 34, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 0, "service_tier": "standard"}}


def test_usage_given_to_finish_wins_and_missing_usage_is_zero() -> None:
    chunks = [chunk({"content": "Hi"}, finish="length")]
    given_usage = run(MessageStream(plan(), message_id="m", input_tokens_estimate=5), chunks, usage=USAGE)
    assert given_usage[-2]["usage"]["output_tokens"] == 34 and given_usage[-2]["delta"]["stop_reason"] == "max_tokens"
    none = run(MessageStream(plan(), message_id="m", input_tokens_estimate=5), chunks)
    assert none[-2]["usage"] == {"output_tokens": 0}
    assert accumulate(none).usage.input_tokens == 5  # message_start's estimate stands


def test_empty_answer_is_a_valid_message() -> None:
    events = run(MessageStream(plan(), message_id="m", input_tokens_estimate=1), [chunk({"content": ""}, "stop")])
    assert [e["type"] for e in events] == ["message_start", "ping", "message_delta", "message_stop"]
    assert accumulate(events).content == []


def test_a_stop_sequence_ends_the_stream() -> None:
    stream = MessageStream(plan(["STOP"]), message_id="m", input_tokens_estimate=1)
    events = stream.start()
    events += stream.feed(chunk({"content": "Count: 1 2 S"}))
    assert not stream.done and events[-1]["delta"]["text"] == "Count: 1 2 "  # "S" may start "STOP": held
    events += stream.feed(chunk({"content": "TOP 3 4"}))
    assert stream.done
    assert stream.feed(chunk({"content": "more"})) == []  # nothing after the match, ever
    events += stream.finish(USAGE)
    message = accumulate(events)
    assert [b.text for b in message.content if b.type == "text"] == ["Count: 1 2 "]
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "STOP")


def test_held_text_is_released_when_no_stop_follows() -> None:
    stream = MessageStream(plan(["STOP"]), message_id="m", input_tokens_estimate=1)
    events = run(stream, [chunk({"content": "ends with ST"}),
                          chunk({"tool_calls": [call(0, id="call_1", name="weather", args="{}")]}),
                          chunk({"content": "OP? no: after a tool"}, finish="tool_calls")])
    message = accumulate(events)
    assert [b.type for b in message.content] == ["text", "tool_use", "text"]
    assert message.content[0].text == "ends with ST"  # type: ignore[union-attr]
    assert message.stop_reason == "tool_use" and message.stop_sequence is None


def test_error_event() -> None:
    stream = MessageStream(plan(), message_id="m", input_tokens_estimate=1)
    stream.start()
    stream.feed(chunk({"content": "partial"}))
    events = stream.error(RateLimited("Capacity temporarily exceeded", upstream_code=3040))
    assert events == [{"type": "error", "error": {"type": "overloaded_error",
                                                  "message": "Capacity temporarily exceeded"}}]
    at.ErrorResponse.model_validate(events[0])
    assert stream.finish() == []  # no message_stop after an error


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet="ab\nSTOP", max_size=40), cuts=st.lists(st.integers(0, 40), max_size=8),
       stops=st.lists(st.text(alphabet="ab\nSTOP", min_size=1, max_size=4), min_size=1, max_size=3))
def test_any_split_of_the_text_gives_the_same_output(text: str, cuts: list[int], stops: list[str]) -> None:
    """Holding back only what could start a stop sequence: chunking never changes what the client sees."""
    points = sorted({min(c, len(text)) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    whole = accumulate(run(MessageStream(plan(stops), message_id="m", input_tokens_estimate=1),
                           [chunk({"content": text}, "stop")]))
    split = accumulate(run(MessageStream(plan(stops), message_id="m", input_tokens_estimate=1),
                           [chunk({"content": p}) for p in pieces] + [chunk({}, "stop")]))
    assert split.content == whole.content
    assert (split.stop_reason, split.stop_sequence) == (whole.stop_reason, whole.stop_sequence)
    # and the same as the non-streamed answer's rule: the text before the first completed stop sequence
    hits = [(text.find(s) + len(s), -len(s), s) for s in stops if s in text]
    if hits:
        end, neg, stop = min(hits)
        expected = text[: end + neg]
        assert whole.stop_sequence == stop
    else:
        expected = text
    assert "".join(b.text for b in whole.content if b.type == "text") == expected


@pytest.mark.parametrize("n", [1, 2, 3])
def test_text_pieces_are_streamed_as_they_come(n: int) -> None:
    """Without stop sequences nothing is held: each piece is its own delta at once."""
    stream = MessageStream(plan(), message_id="m", input_tokens_estimate=1)
    stream.start()
    for i in range(n):
        events = stream.feed(chunk({"content": f"p{i}"}))
        assert events[-1]["delta"] == {"type": "text_delta", "text": f"p{i}"}


def test_nothing_in_the_same_chunk_follows_a_stop_sequence() -> None:
    events = run(MessageStream(plan(["###"]), message_id="m", input_tokens_estimate=1), [
        chunk({"content": "done ### then", "tool_calls": [call(0, id="call_1", name="weather", args="{}")]},
              finish="tool_calls")])
    message = accumulate(events)
    assert [b.type for b in message.content] == ["text"]
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "###")
