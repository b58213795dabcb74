"""Streams: recorded SSE bytes -> SSEDecoder -> ChoiceStream -> chunk(), reassembled as an OpenAI client would."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.chat import ChatCompletionChunk, ChatCompletionRequest
from cfai_cli.core.sse import SSEDecoder
from cfai_cli.core.translate.chat import to_workers_chat
from cfai_cli.core.translate.chat_answer import from_workers_chat, truncate_at_stop
from cfai_cli.core.translate.chat_stream import ChoiceStream, chunk, chunk_each, completion_to_chunks
from cfai_cli.core.translate.text_filters import StopFilter, ThinkFilter
from cfai_cli.core.workers.chat import ParsedUsage, parse_chat_result, split_think
from cfai_cli.errors import UpstreamStreamError
from tests.core.helpers import Reassembled, fixture_bytes, fixture_json, id_counter, splits, sse_fixtures

MODEL = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"


@dataclass
class StreamRun:
    chunks: list[ChatCompletionChunk]
    usage: ParsedUsage | None
    error: UpstreamStreamError | None = None

    def reassemble(self) -> Reassembled:
        out = Reassembled()
        for item in self.chunks:
            [choice] = item["choices"]
            out.add(dict(choice))
        return out


def run(pieces: Iterable[bytes], *, stop: Sequence[str] = (), max_tokens_sent: int | None = None,
        include_usage: bool = False) -> StreamRun:
    """What service.chat does with one upstream stream, minus the I/O."""
    decoder = SSEDecoder()
    stream = ChoiceStream(index=0, new_call_id=id_counter(), stop=stop, max_tokens_sent=max_tokens_sent)
    choices = []
    done = False
    try:
        for raw in pieces:
            for event in decoder.decode(raw):
                if event.data.strip() == "[DONE]":
                    done = True
                    break
                choices.extend(stream.feed(json.loads(event.data)))
            if done:
                break
        if not done:
            for event in decoder.flush():
                if event.data.strip() == "[DONE]":
                    done = True
                    break
                choices.extend(stream.feed(json.loads(event.data)))
        choices.extend(stream.finish(done=done))
        error = None
    except UpstreamStreamError as exc:
        error = exc
    chunks = [chunk([c], completion_id="chatcmpl-s", created=1_700_000_000, model=MODEL, include_usage=include_usage)
              for c in choices]
    return StreamRun(chunks, stream.usage, error)


@dataclass(frozen=True)
class Expect:
    content: str = ""
    reasoning: str = ""
    tool_calls: tuple[tuple[str, str, str], ...] = ()  # (id, name, arguments)
    finish: str | None = "stop"
    usage: tuple[int, int] | None = None
    error: str | None = None  # substring of the UpstreamStreamError message


EXPECTED: dict[str, Expect] = {
    "native_text.sse": Expect(content="Hello there! How can I help?", usage=(10, 7)),
    "native_tool_calls_whole.sse": Expect(
        tool_calls=(("call_1", "get_weather", '{"location": "London"}'),), finish="tool_calls", usage=(210, 18)),
    "native_tool_calls_incremental.sse": Expect(
        # Upstream ids that are not OpenAI-style `call_…` ids are replaced by generated ones.
        tool_calls=(("call_1", "get_weather", '{"location": "London"}'),
                    ("call_2", "get_time", '{"timezone": "Europe/London"}')),
        finish="tool_calls", usage=(240, 31)),
    "native_finish_reason_bare.sse": Expect(
        tool_calls=(("call_1", "get_weather", '{"location": "Oslo"}'),), finish="tool_calls"),
    "native_think_split.sse": Expect(
        reasoning="\nThe user says hi; answer politely.\n", content="Hi! Nice to meet you.", usage=(9, 22)),
    "glm_reasoning.sse": Expect(
        reasoning="Okay, the user is asking about cows.", content="A cow is a farm animal.", usage=(13, 15)),
    "vllm_tool_calls.sse": Expect(
        reasoning="Two lookups needed.",
        tool_calls=(("call_1", "get_weather", '{"location": "東京"}'),
                    ("call_2", "get_time", '{"timezone": "Asia/Tokyo"}')),
        finish="tool_calls", usage=(320, 44)),
    "native_truncated.sse": Expect(content="Once upon a time, there was a", finish=None,
                                   error="ended before it was complete"),
    "native_midstream_error.sse": Expect(content="Let me think about that", finish=None,
                                         error="(3046): Request timeout"),
    "vllm_midstream_error.sse": Expect(content="Partial", finish=None, usage=(20, 1),
                                       error="This model's maximum context length is 131072 tokens."),
    "native_unicode.sse": Expect(
        content="Grüße 👋🏽, 你好，世界！ She said \"hi\" \\o/ C:\\path\\to\r\n\r\nline after CRLF"
                "\n\ndata: [DONE]\n\n 🇯🇵 end", usage=(30, 25)),
}


def test_every_stream_fixture_has_expectations() -> None:
    assert sorted(EXPECTED) == sse_fixtures()


def check(result: StreamRun, expect: Expect) -> None:
    got = result.reassemble()
    assert got.role == "assistant"
    assert got.content == expect.content
    assert got.reasoning == expect.reasoning
    assert [(c["id"], c["name"], c["arguments"]) for c in got.tool_calls] == list(expect.tool_calls)
    assert all(c["type"] == "function" for c in got.tool_calls)
    for c in got.tool_calls:
        json.loads(c["arguments"])
    assert got.finish_reason == expect.finish
    usage = (result.usage.prompt_tokens, result.usage.completion_tokens) if result.usage else None
    assert usage == expect.usage
    if expect.error is None:
        assert result.error is None
    else:
        assert result.error is not None
        assert expect.error in result.error.message
        assert "AiError" not in result.error.message


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_stream_fixture(name: str) -> None:
    check(run([fixture_bytes(name)]), EXPECTED[name])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_stream_fixture_split_at_every_offset(name: str) -> None:
    raw = fixture_bytes(name)
    whole = run([raw])
    for cut in range(len(raw) + 1):
        result = run([raw[:cut], raw[cut:]])
        assert result.reassemble().summary() == whole.reassemble().summary(), f"split at byte {cut}"
        assert result.usage == whole.usage
        assert (result.error is None) == (whole.error is None)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_stream_fixture_byte_by_byte(name: str) -> None:
    raw = fixture_bytes(name)
    check(run([raw[i : i + 1] for i in range(len(raw))]), EXPECTED[name])


@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from(sorted(EXPECTED)), data=st.data())
def test_stream_fixture_random_splits(name: str, data: st.DataObject) -> None:
    raw = fixture_bytes(name)
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(raw)), max_size=30))
    check(run(list(splits(raw, cuts))), EXPECTED[name])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_chunk_shape(name: str) -> None:
    result = run([fixture_bytes(name)], include_usage=True)
    for item in result.chunks:
        assert item["id"] == "chatcmpl-s"
        assert item["object"] == "chat.completion.chunk"
        assert item["model"] == MODEL
        assert item["usage"] is None
        [choice] = item["choices"]
        assert choice["index"] == 0 and choice["logprobs"] is None
        if choice["finish_reason"] is None:
            assert choice["delta"], "an empty delta without a finish_reason"
        else:
            assert choice["delta"] == {}
    if result.error is None:
        assert result.chunks[-1]["choices"][0]["finish_reason"] is not None
    assert "usage" not in run([fixture_bytes(name)]).chunks[0]


@pytest.mark.parametrize("name", [n for n, e in EXPECTED.items() if e.tool_calls])
def test_tool_call_id_and_name_only_in_first_fragment(name: str) -> None:
    got = run([fixture_bytes(name)]).reassemble()
    seen: set[int] = set()
    for piece in got.fragments:
        fn = piece.get("function", {})
        if piece["index"] not in seen:
            seen.add(piece["index"])
            assert piece.get("id") and piece.get("type") == "function" and fn.get("name")
            assert "arguments" in fn
        else:
            assert "id" not in piece and "type" not in piece and "name" not in fn
            assert fn.get("arguments")
    assert seen == set(range(len(got.tool_calls)))


def test_truncated_stream_raises_only_at_finish() -> None:
    stream = ChoiceStream(index=0, new_call_id=id_counter())
    stream.feed({"response": "Once"})
    with pytest.raises(UpstreamStreamError) as info:
        stream.finish(done=False)
    assert info.value.status == 502
    assert info.value.code == "stream_error"


def test_error_event_raises_with_upstream_code() -> None:
    stream = ChoiceStream(index=0, new_call_id=id_counter())
    event = fixture_bytes("native_midstream_error.sse").split(b"\n\n")[2].removeprefix(b"data: ")
    with pytest.raises(UpstreamStreamError) as info:
        stream.feed(json.loads(event))
    assert info.value.upstream_code == 3046



@pytest.mark.parametrize(("event", "fails"), [
    ({"response": "", "error": "Request timeout"}, True),
    ({"response": "", "errors": [{"code": 3046, "message": "Request timeout"}]}, True),
    ({"response": "", "success": False}, True),
    ({"response": "ok", "error": None, "errors": [], "success": True}, False),
])
@pytest.mark.parametrize("first", [True, False])
def test_each_error_shape_raises_first_or_later(event: dict[str, Any], fails: bool, first: bool) -> None:
    # An OpenAI-style `error`, a non-empty `errors`, `success: false`: each ends the stream whether it is the first
    # event or comes after text (the text event before it still reaches the client); their empty forms do not.
    stream = ChoiceStream(index=0, new_call_id=id_counter())
    out: list[Any] = []
    events = [event] if first else [{"response": "Hi", "p": "x"}, event]
    if fails:
        with pytest.raises(UpstreamStreamError):
            stream.feed_into(out, events)
        assert len(out) == (0 if first else 2)
    else:
        stream.feed_into(out, events)
        assert [c["delta"].get("content") for c in out][-1] == "ok"

# ---- stop sequences, budgets and other event shapes, fed directly -----------------------------------

@pytest.mark.parametrize(("stop", "content"), [
    (["can I"], "Hello there! How "),
    (["e! H"], "Hello ther"),  # spans three events
    (["Hello"], ""),
    (["?"], "Hello there! How can I help"),
    (["help?!"], "Hello there! How can I help?"),  # a held-back prefix that never completes is released
    (["x", "", "!"], "Hello there"),
])
def test_stream_stop_sequences(stop: list[str], content: str) -> None:
    raw = fixture_bytes("native_text.sse")
    expected = run([raw], stop=stop, max_tokens_sent=7).reassemble()
    assert expected.content == content
    assert expected.finish_reason == ("stop" if content != "Hello there! How can I help?" else "length")
    for cut in range(len(raw) + 1):
        assert run([raw[:cut], raw[cut:]], stop=stop, max_tokens_sent=7).reassemble().summary() == expected.summary()


def test_stop_suppresses_later_tool_calls() -> None:
    stream = ChoiceStream(index=0, new_call_id=id_counter(), stop=["END"])
    out = stream.feed({"response": "done END more"})
    out += stream.feed({"tool_calls": [{"name": "f", "arguments": {}}]})
    out += stream.finish(done=True)
    got = Reassembled()
    for c in out:
        got.add(dict(c))
    assert (got.content, got.tool_calls, got.finish_reason) == ("done ", [], "stop")


@pytest.mark.parametrize(("max_tokens_sent", "finish"), [(None, "stop"), (8, "stop"), (7, "length"), (3, "length")])
def test_stream_length_from_usage(max_tokens_sent: int | None, finish: str) -> None:
    assert run([fixture_bytes("native_text.sse")], max_tokens_sent=max_tokens_sent).reassemble().finish_reason == finish


EVENT_CASES: list[tuple[str, list[Any], dict[str, Any]]] = [
    ("text_completion chunks", [
        {"object": "text_completion", "choices": [{"index": 0, "text": " once", "finish_reason": None}]},
        {"object": "text_completion", "choices": [{"index": 0, "text": " upon", "finish_reason": "length"}]}],
     {"content": " once upon", "finish_reason": "length"}),
    ("delta.reasoning spelling", [
        {"choices": [{"index": 0, "delta": {"reasoning": "Think"}}]},
        {"choices": [{"index": 0, "delta": {"reasoning": "ing"}}]},
        {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": "stop"}]}],
     {"reasoning": "Thinking", "content": "Hi", "finish_reason": "stop"}),
    ("inline think in vLLM content, as the non-stream parser splits it", [
        {"choices": [{"index": 0, "delta": {"content": "<th"}}]},
        {"choices": [{"index": 0, "delta": {"content": "ink>plan</think>"}}]},
        {"choices": [{"index": 0, "delta": {"content": "\n\nAnswer"}, "finish_reason": "stop"}]}],
     {"reasoning": "plan", "content": "Answer"}),
    ("JSON-mode object response", [{"response": {"a": 1}}], {"content": '{"a": 1}'}),
    ("bare finish_reason length", [{"response": "x"}, {"finish_reason": "length"}],
     {"content": "x", "finish_reason": "length"}),
    ("native and vLLM shapes on one stream", [
        {"response": "Hel"}, {"choices": [{"index": 0, "delta": {"content": "lo"}}]},
        {"response": "", "usage": {"prompt_tokens": 1, "completion_tokens": 2}}],
     {"content": "Hello"}),
    ("two flat tool calls without id or index", [
        {"tool_calls": [{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": "{}"}]}],
     {"tool_calls": [{"id": "call_1", "type": "function", "name": "a", "arguments": '{"x": 1}'},
                     {"id": "call_2", "type": "function", "name": "b", "arguments": "{}"}],
      "finish_reason": "tool_calls"}),
    ("tool call arguments without a name continue the last call", [
        {"tool_calls": [{"name": "a", "arguments": "{\"x\""}]}, {"tool_calls": [{"arguments": ": 1}"}]}],
     {"tool_calls": [{"id": "call_1", "type": "function", "name": "a", "arguments": '{"x": 1}'}],
      "finish_reason": "tool_calls"}),
    ("no events at all", [], {}),
    ("p-only and empty events", [{"p": "abc"}, {"response": ""}, {"tool_calls": []}, {"choices": []}], {}),
]


@pytest.mark.parametrize(("events", "expected"), [c[1:] for c in EVENT_CASES], ids=[c[0] for c in EVENT_CASES])
def test_event_shapes(events: list[Any], expected: dict[str, Any]) -> None:
    stream = ChoiceStream(index=2, new_call_id=id_counter())
    out = [c for e in events for c in stream.feed(e)] + stream.finish(done=True)
    assert {c["index"] for c in out} == {2}
    got = Reassembled()
    for c in out:
        got.add(dict(c))
    want = {"role": "assistant", "content": "", "reasoning": "", "tool_calls": [], "finish_reason": "stop",
            **expected}
    assert got.summary() == want


@pytest.mark.parametrize("event", [
    ["not", "an", "object"],
    "text",
    {"error": "boom"},
    {"error": {"message": "AiError: bad (0123abcd-1111)", "code": "invalid_prompt"}},
    {"errors": [{"code": "3040", "message": "Capacity temporarily exceeded"}], "success": False},
])
def test_bad_events_raise(event: Any) -> None:
    stream = ChoiceStream(index=0, new_call_id=id_counter())
    with pytest.raises(UpstreamStreamError) as info:
        stream.feed(event)
    assert "AiError" not in info.value.message


def test_explicit_finish_without_done_is_complete() -> None:
    stream = ChoiceStream(index=0, new_call_id=id_counter())
    stream.feed({"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": "stop"}]})
    assert stream.finish(done=False)[-1]["finish_reason"] == "stop"


# ---- the two filters, as properties -----------------------------------------------------------------

def feed_stop(stops: list[str], pieces: Iterable[str]) -> tuple[str, bool]:
    f = StopFilter(stops)
    out = "".join(f.feed(p) for p in pieces) + f.flush()
    return out, f.stopped


def cut_text(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(c, len(text)) for c in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


STOP_ALPHABET = "ab\n"


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=STOP_ALPHABET, max_size=40),
       stops=st.lists(st.text(alphabet=STOP_ALPHABET, min_size=1, max_size=4), min_size=1, max_size=3),
       cuts=st.lists(st.integers(min_value=0, max_value=40), max_size=10))
def test_stop_filter_split_invariant(text: str, stops: list[str], cuts: list[int]) -> None:
    whole = feed_stop(stops, [text])
    assert feed_stop(stops, cut_text(text, cuts)) == whole
    assert feed_stop(stops, list(text)) == whole
    out, stopped = whole
    assert not any(s in out for s in stops)
    assert text.startswith(out)
    # Streaming and non-streaming answers agree.
    assert (out, stopped) == truncate_at_stop(text, stops)


@pytest.mark.parametrize(("stops", "pieces", "out"), [
    ([], ["a", "b"], "ab"),
    (["END"], ["x E", "N", "D y"], "x "),
    (["END"], ["x E", "N"], "x EN"),  # held back until the end, then released
    (["abcd", "c"], ["ab", "cd"], "ab"),  # "c" completes first
    (["\n\n"], ["para\n", "\nnext"], "para"),
])
def test_stop_filter_cases(stops: list[str], pieces: list[str], out: str) -> None:
    assert feed_stop(stops, pieces)[0] == out


def merged(pieces: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for kind, text in pieces:
        if not text:
            continue
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + text)
        else:
            out.append((kind, text))
    return out


def feed_think(pieces: Iterable[str]) -> list[tuple[str, str]]:
    f = ThinkFilter()
    out = [p for piece in pieces for p in f.feed(piece)]
    return merged([*out, *f.flush()])


THINK_TOKENS = ["<think>", "</think>", "<", "</", "think", "th", "ink>", ">", "\n", " ", "a", "b"]
think_text = st.lists(st.sampled_from(THINK_TOKENS), max_size=14).map("".join)


@settings(max_examples=200, deadline=None)
@given(text=think_text, cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=10))
def test_think_filter_split_invariant(text: str, cuts: list[int]) -> None:
    whole = feed_think([text])
    assert feed_think(cut_text(text, cuts)) == whole
    assert feed_think(list(text)) == whole
    if "<" not in text:
        assert whole == ([("content", text)] if text else [])


@settings(max_examples=200, deadline=None)
@given(reasoning=st.text(alphabet="ab <>/\n", max_size=15), gap=st.text(alphabet=" \n", max_size=3),
       answer=st.text(alphabet="ab <>\n", max_size=15), lead=st.sampled_from(["", " ", "\n"]),
       cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=8))
def test_think_filter_agrees_with_split_think(reasoning: str, gap: str, answer: str, lead: str,
                                              cuts: list[int]) -> None:
    if "</think>" in reasoning:
        return
    text = f"{lead}<think>{reasoning}</think>{gap}{answer}"
    streamed = dict(feed_think(cut_text(text, cuts)))
    thought, content = split_think(text)
    assert streamed.get("reasoning", "").strip() == (thought or "")
    assert streamed.get("content", "") == content


@pytest.mark.parametrize(("pieces", "out"), [
    (["Hello"], [("content", "Hello")]),
    (["<think>a</think>b"], [("reasoning", "a"), ("content", "b")]),
    (["<th", "ink>", "a</th", "ink>", "\n\n", "b"], [("reasoning", "a"), ("content", "b")]),
    (["<think>a</think>", " \n ", " b c"], [("reasoning", "a"), ("content", "b c")]),
    (["  ", "<think>a"], [("reasoning", "a")]),
    (["<thi"], [("content", "<thi")]),
    (["<b>bold</b>"], [("content", "<b>bold</b>")]),
    (["x <think>y</think>"], [("content", "x <think>y</think>")]),
])
def test_think_filter_cases(pieces: list[str], out: list[tuple[str, str]]) -> None:
    assert feed_think(pieces) == out


# ---- completion_to_chunks ---------------------------------------------------------------------------

def completion_of(fixtures: list[str], model: str = MODEL, **fields: Any) -> Any:
    req = validate_request(ChatCompletionRequest, {"model": "m", "messages": [{"role": "user", "content": "q"}],
                                                   **fields})
    call = to_workers_chat(req, model, default_max_tokens=256, stream=False)
    return from_workers_chat(req, call, [parse_chat_result(fixture_json(f)["result"]) for f in fixtures],
                             completion_id="chatcmpl-r", created=1_700_000_001, new_call_id=id_counter())


REPLAYED = [
    ["native_text.json"], ["native_tool_calls_flat.json"], ["llama4_scout_tool_calls.json"],
    ["native_json_mode.json"], ["native_think_inline.json"], ["glm_chat_completion_tools.json"],
    ["qwen3_chat_completion_reasoning.json"], ["gpt_oss_responses.json"],
    ["native_text.json", "native_tool_calls_flat.json", "native_think_inline.json"],
]


@pytest.mark.parametrize("fixtures", REPLAYED, ids=lambda f: "+".join(f))
@pytest.mark.parametrize("include_usage", [False, True])
def test_completion_to_chunks_round_trip(fixtures: list[str], include_usage: bool) -> None:
    completion = completion_of(fixtures, n=len(fixtures))
    chunks = completion_to_chunks(completion, include_usage=include_usage)
    by_index: dict[int, Reassembled] = {}
    for item in chunks:
        assert (item["id"], item["created"], item["model"]) == ("chatcmpl-r", 1_700_000_001, MODEL)
        assert item["object"] == "chat.completion.chunk"
        if include_usage:
            assert "usage" in item
        else:
            assert "usage" not in item
        for choice in item["choices"]:
            by_index.setdefault(choice["index"], Reassembled()).add(dict(choice))
    if include_usage:
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == completion["usage"]
        assert all(c["usage"] is None for c in chunks[:-1])
    assert sorted(by_index) == [c["index"] for c in completion["choices"]]
    for choice in completion["choices"]:
        got, message = by_index[choice["index"]], choice["message"]
        assert got.role == "assistant"
        assert got.content == (message["content"] or "")
        assert got.reasoning == message.get("reasoning_content", "")
        assert [{"id": c["id"], "type": c["type"], "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in got.tool_calls] == message.get("tool_calls", [])
        assert got.finish_reason == choice["finish_reason"]


@pytest.mark.parametrize("event", [
    {"errors": [{"code": 3043, "message": "AiError: Internal server error"}]},
    {"success": False, "errors": [], "result": {}},
    {"error": "overloaded"},
    {"error": {"code": "3040", "message": "Capacity temporarily exceeded"}},
])
def test_every_plausible_mid_stream_error_shape_is_an_error(event: dict[str, object]) -> None:
    stream = ChoiceStream(index=0, new_call_id=id_counter())
    stream.feed({"response": "partial"})
    with pytest.raises(UpstreamStreamError):
        stream.feed(event)


@pytest.mark.parametrize("event", [{"response": "ok", "errors": []}, {"response": "ok", "error": None}])
def test_empty_error_fields_are_not_errors(event: dict[str, object]) -> None:
    stream = ChoiceStream(index=0, new_call_id=id_counter())
    assert stream.feed(event)[-1]["delta"] == {"content": "ok"}


# ---- the plain-text shortcut ------------------------------------------------------------------------

_NATIVE_EVENTS = st.one_of(
    st.sampled_from([*THINK_TOKENS, "", "STOP", "ST", "OP", "é 😀"]).map(lambda t: {"response": t, "p": "abc"}),
    st.sampled_from([*THINK_TOKENS, "x"]).map(lambda t: {"response": t}),
    st.just({"response": {"json": "mode"}}),
    st.just({"response": None}),
    st.just({"response": "", "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}),
    st.just({"response": "t", "tool_calls": [{"name": "f", "arguments": {"a": 1}}]}),
)


def _feed_all(events: list[Any], stop: list[str], *, shortcut: bool) -> tuple[list[Any], int]:
    stream = ChoiceStream(index=2, new_call_id=id_counter(), stop=stop)
    out: list[Any] = []
    for event in events:
        if not shortcut:
            stream._plain = False  # every event through the think and stop filters
        out += stream.feed(event)
    return out + stream.finish(done=True), stream.text_chars


@settings(max_examples=300, deadline=None)
@given(events=st.lists(_NATIVE_EVENTS, max_size=16), stop=st.sampled_from([[], ["STOP"], ["</think>"]]))
def test_plain_text_shortcut_gives_the_filters_choices(events: list[Any], stop: list[str]) -> None:
    # Once past the think block with no stop sequence, a text event's delta is its text as it is: the
    # choices (and the characters counted for usage) are the ones the filters give event by event.
    assert _feed_all(events, stop, shortcut=True) == _feed_all(events, stop, shortcut=False)


def test_plain_text_shortcut_waits_for_the_end_of_the_think_block() -> None:
    events = [{"response": "<think>"}, {"response": "a", "p": "x"}, {"response": "</think>", "p": "x"},
              {"response": " b", "p": "x"}, {"response": "c", "p": "x"}]
    choices, chars = _feed_all(events, [], shortcut=True)
    assert [c["delta"] for c in choices] == [{"role": "assistant", "content": ""}, {"reasoning_content": "a"},
                                             {"content": "b"}, {"content": "c"}, {}]
    assert chars == 2


def _feed_into(batches: list[list[Any]], stop: list[str]) -> tuple[list[Any], int, list[Any], str | None]:
    stream = ChoiceStream(index=2, new_call_id=id_counter(), stop=stop)
    out: list[Any] = []
    seen: list[Any] = []
    try:
        for batch in batches:
            stream.feed_into(out, batch, seen.append)
    except UpstreamStreamError as exc:
        return out, stream.text_chars, seen, exc.message
    return out + stream.finish(done=True), stream.text_chars, seen, None


def _feed_each(batches: list[list[Any]], stop: list[str]) -> tuple[list[Any], int, list[Any], str | None]:
    stream = ChoiceStream(index=2, new_call_id=id_counter(), stop=stop)
    out: list[Any] = []
    seen: list[Any] = []
    try:
        for event in (event for batch in batches for event in batch):
            if type(event) is not dict or "usage" in event:  # what may carry the count
                seen.append(event)
            out += stream.feed(event)
    except UpstreamStreamError as exc:
        return out, stream.text_chars, seen, exc.message
    return out + stream.finish(done=True), stream.text_chars, seen, None


@settings(max_examples=300, deadline=None)
@given(batches=st.lists(st.lists(st.one_of(_NATIVE_EVENTS, st.just({"error": "boom"}), st.just([1])), max_size=8),
                        max_size=4),
       stop=st.sampled_from([[], ["STOP"], ["</think>"]]))
def test_a_reads_events_fed_at_once_give_what_feeding_each_gives(batches: list[list[Any]], stop: list[str]) -> None:
    # A read's events through `feed_into` (what service.workers_stream does): the same choices, characters counted
    # and failure as `feed` event by event; every event that may carry `usage` (a dict with one, or not a dict) is
    # shown to `seen` before it is fed, and what came before a failing event is in `out`.
    into, each = _feed_into(batches, stop), _feed_each(batches, stop)
    assert into == each
    assert json.dumps(into[0]) == json.dumps(each[0])  # the same keys in the same order: the same bytes on the wire
    assert len({id(choice) for choice in into[0]}) == len(into[0])  # each choice a dict of its own


@pytest.mark.parametrize("include_usage", [False, True])
def test_chunk_each_is_chunk_of_each_choice(include_usage: bool) -> None:
    choices: list[Any] = [{"index": 0, "delta": {"content": f"t{i}"}, "logprobs": None, "finish_reason": None}
                          for i in range(3)]
    made = chunk_each(choices, completion_id="chatcmpl-1", created=7, model=MODEL, include_usage=include_usage)
    expected = [chunk([choice], completion_id="chatcmpl-1", created=7, model=MODEL, include_usage=include_usage)
                for choice in choices]
    assert [json.dumps(c) for c in made] == [json.dumps(c) for c in expected]  # keys in the same order too
    made[0]["choices"].append(choices[1])  # each chunk and its choices list its own
    assert [len(c["choices"]) for c in made] == [2, 1, 1] and made[1] is not made[2]
