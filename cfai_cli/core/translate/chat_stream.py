"""Workers AI stream events -> OpenAI `chat.completion.chunk`s, one small step per concern.

Pure: standard library, cfai_cli.errors and cfai_cli.core. A `ChoiceStream` turns decoded upstream
events (native `{"response": …}` or vLLM chunks, mixed freely) into choice deltas; `chunk()` wraps
deltas into chunks. Think tags and stop sequences are handled by core.translate.text_filters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cfai_cli.core.openai.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChunkChoice,
    Delta,
    FinishReason,
    ToolCallDelta,
    Usage,
)
from cfai_cli.core.translate.chat_answer import finish_reason_for, openai_call_id
from cfai_cli.core.translate.text_filters import StopFilter, ThinkFilter
from cfai_cli.core.workers.chat import ParsedUsage, json_text, parse_usage
from cfai_cli.core.workers.envelope import clean_message, first_error
from cfai_cli.errors import UpstreamStreamError


@dataclass(slots=True)
class _ToolSlot:
    """A streamed tool call's place among the choice's calls: its index and what it was keyed by."""

    index: int
    key: str
    has_args: bool = False


def is_error_event(event: object) -> bool:
    """A stream event that reports a failure. The mid-stream error shape is unconfirmed (reference §14.16):
    an OpenAI-style `error`, or an envelope whose `errors` is non-empty or whose `success` is false."""
    if type(event) is not dict and not isinstance(event, Mapping):  # a dict first: an ABC check is a Python call
        return False
    errors = event.get("errors")
    return bool(event.get("error") or event.get("success") is False or (isinstance(errors, list) and errors))


_TEXT_KEYS = frozenset({"response", "p"})  # an event with only these keys carries text and nothing else
# `_text_only(event)` for a dict: `event.keys() <= _TEXT_KEYS` without the keys' view (22 events: ~32k -> ~24k
# instructions, callgrind; docs/performance.md, "First event round 9").
_text_only = _TEXT_KEYS.issuperset
_ERROR_KEYS = frozenset({"error", "errors", "success"})  # what `is_error_event` looks at


class ChoiceStream:
    """One choice's upstream stream -> its OpenAI deltas. Feed decoded JSON events, then `finish()`."""

    def __init__(self, *, index: int, new_call_id: Callable[[], str], stop: Sequence[str] = (),
                 max_tokens_sent: int | None = None, max_tool_calls: int | None = None) -> None:
        self.index = index
        self._max_tool_calls = max_tool_calls  # 1 for parallel_tool_calls: false: later calls are left out
        self._new_call_id = new_call_id
        self._stop = StopFilter(stop)
        self._think = ThinkFilter()
        self._max_tokens_sent = max_tokens_sent
        self._tools: dict[str, _ToolSlot] = {}
        self._named: set[str] = set()  # tool calls whose id and name were already sent
        self._last_tool: _ToolSlot | None = None
        self._upstream_finish: str | None = None
        self._started = False
        self._plain = False  # the think filter is past its block and there are no stop sequences
        self.usage: ParsedUsage | None = None
        self.text_chars = 0

    # -- events ------------------------------------------------------------------------------------

    def feed(self, event: Any) -> list[ChunkChoice]:
        if type(event) is dict and self._started and _text_only(event):
            # Nearly every event of a native stream is `{"response": "tok", "p": "…"}` (`p` is padding):
            # only its text can make a delta, and the checks below (ABC isinstance calls, ~6 µs an event)
            # would all come out empty.
            response = event.get("response")
            if response is None or response == "":
                return []
            if self._plain and type(response) is str:
                # Neither filter can change the text now: it is the delta (~15k -> ~5k instructions an event).
                self.text_chars += len(response)
                # `_choice`'s dict written out: its call per event was ~1 % of a stream (callgrind).
                return [{"index": self.index, "delta": {"content": response}, "logprobs": None,
                         "finish_reason": None}]
            out = [self._choice(d) for kind, piece in self._think.feed(json_text(response))
                   for d in self._text(kind, piece) if d]
            self._plain = self._think.answering and self._stop.passes_all
            return out
        if type(event) is not dict and not isinstance(event, Mapping):
            raise UpstreamStreamError("Workers AI sent a stream event that is not a JSON object.")
        if not _ERROR_KEYS.isdisjoint(event) and is_error_event(event):  # only those keys can make it one
            code, message = first_error(event)
            raise UpstreamStreamError(
                f"Workers AI reported an error mid-stream{f' ({code})' if code is not None else ''}: "
                f"{clean_message(message)}", upstream_code=code)
        deltas: list[Delta] = []
        if not self._started:
            self._started = True
            deltas.append({"role": "assistant", "content": ""})
        usage = event.get("usage")
        if usage is not None and (usage := parse_usage(usage)) is not None:
            if usage.cached_tokens is None and self.usage is not None:
                # Workers AI's trailing usage event may leave out the cached count earlier chunks gave (§2.6).
                usage.cached_tokens = self.usage.cached_tokens
            self.usage = usage  # running totals on vLLM streams: the last one wins
        if isinstance(event.get("finish_reason"), str):
            self._upstream_finish = event["finish_reason"]
        response = event.get("response")
        if response is not None and response != "":
            for kind, piece in self._think.feed(json_text(response)):
                deltas.extend(self._text(kind, piece))
        tool_calls = event.get("tool_calls")
        if tool_calls is not None:
            deltas.extend(self._tool_deltas(tool_calls))
        choices = event.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, Mapping):
                    deltas.extend(self._chat_choice(choice))
        self._plain = self._think.answering and self._stop.passes_all
        index = self.index  # `_choice`'s dict written out, as above
        return [{"index": index, "delta": d, "logprobs": None, "finish_reason": None} for d in deltas if d]

    def feed_into(self, out: list[ChunkChoice], events: Sequence[Any],
                  seen: Callable[[Any], None] | None = None) -> None:
        """`out += feed(event)` for each of a read's events in turn, `seen(event)` first for each that may carry
        `usage` (a dict with that key, or not a dict). `out` holds what came before an event that raises. A text
        event past the think block without stop sequences (nearly every one) is taken here, in one loop, not
        through a `feed` call each (with service.workers_stream's SSE decoding in its read loop, a 20-chunk
        stream's first write 1.324 -> 1.290 M instructions, bench/stream_cpu.py --first under callgrind,
        2026-12-02, round 8)."""
        feed = self.feed
        # Each text event's choice a copy of this one, its delta then set in place (chunk_each: a copy is cheaper).
        blank: ChunkChoice = {"index": self.index, "delta": {}, "logprobs": None, "finish_reason": None}
        copy = blank.copy
        for event in events:
            if self._plain and type(event) is dict and _text_only(event):
                response = event.get("response")
                if type(response) is str:  # what `feed` does with it, written out
                    if response:
                        self.text_chars += len(response)
                        choice = copy()
                        choice["delta"] = {"content": response}
                        out.append(choice)
                    continue
            if seen is not None and (type(event) is not dict or "usage" in event):
                seen(event)
            out += feed(event)

    def _chat_choice(self, choice: Mapping[str, Any]) -> list[Delta]:
        deltas: list[Delta] = []
        delta = choice.get("delta") or choice.get("message")
        if isinstance(delta, Mapping):
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                deltas.extend(self._text("reasoning", reasoning))
            content = delta.get("content")
            if isinstance(content, str) and content:
                # Same think-splitting as parse_chat_result applies to a whole message's content.
                for kind, piece in self._think.feed(content):
                    deltas.extend(self._text(kind, piece))
            deltas.extend(self._tool_deltas(delta.get("tool_calls")))
        elif isinstance(choice.get("text"), str):
            deltas.extend(self._text("content", choice["text"]))
        if isinstance(choice.get("finish_reason"), str):
            self._upstream_finish = choice["finish_reason"]
        return deltas

    def _text(self, kind: str, text: str) -> list[Delta]:
        if kind == "reasoning":
            return [{"reasoning_content": text}] if not self._stop.stopped else []
        kept = self._stop.feed(text)
        self.text_chars += len(kept)
        return [{"content": kept}] if kept else []

    def _tool_deltas(self, raw: Any) -> list[Delta]:
        if not isinstance(raw, list) or self._stop.stopped:
            return []
        out: list[Delta] = []
        for item in raw:
            if not isinstance(item, Mapping):
                continue
            raw_fn = item.get("function")
            fn: Mapping[str, Any] = raw_fn if isinstance(raw_fn, Mapping) else {}
            name = fn.get("name") or item.get("name")
            args = fn.get("arguments", item.get("arguments"))
            up_index, up_id = item.get("index"), item.get("id")
            slot = self._slot(name, up_index, up_id)
            if slot is None or (self._max_tool_calls is not None and slot.index >= self._max_tool_calls):
                continue
            piece: ToolCallDelta = {"index": slot.index}
            if isinstance(name, str) and name and slot.key not in self._named:
                self._named.add(slot.key)
                piece["id"] = openai_call_id(up_id, self._new_call_id)
                piece["type"] = "function"
                piece["function"] = {"name": name, "arguments": ""}
            if args is not None and args != "":
                text = args if isinstance(args, str) else json_text(args)
                piece.setdefault("function", {})["arguments"] = text
                slot.has_args = True
            if len(piece) > 1:
                out.append({"tool_calls": [piece]})
        return out

    def _slot(self, name: Any, up_index: Any, up_id: Any) -> _ToolSlot | None:
        key: str | None = None
        slot: _ToolSlot | None
        if isinstance(up_index, int) and not isinstance(up_index, bool):
            key = f"i{up_index}"
        elif isinstance(up_id, str) and up_id:
            key = f"c{up_id}"
        if key is not None and key in self._tools:
            slot = self._tools[key]
        elif isinstance(name, str) and name:
            key = key or f"n{len(self._tools)}"
            slot = self._tools[key] = _ToolSlot(index=len(self._tools), key=key)
        else:
            slot = self._last_tool  # a bare argument fragment continues the last call
        if slot is not None:
            self._last_tool = slot
        return slot

    def _choice(self, delta: Delta, finish: FinishReason | None = None) -> ChunkChoice:
        return {"index": self.index, "delta": delta, "logprobs": None, "finish_reason": finish}

    # -- end ---------------------------------------------------------------------------------------

    def finish(self, *, done: bool) -> list[ChunkChoice]:
        """The closing deltas; `done` says whether upstream sent `[DONE]` (or an explicit finish)."""
        if not done and self._upstream_finish is None:
            raise UpstreamStreamError("The Workers AI stream ended before it was complete.")
        deltas: list[Delta] = []
        if not self._started:
            deltas.append({"role": "assistant", "content": ""})
        for kind, piece in self._think.flush():
            deltas.extend(self._text(kind, piece))
        tail = self._stop.flush()
        if tail:
            self.text_chars += len(tail)
            deltas.append({"content": tail})
        out = [self._choice(d) for d in deltas]
        reason = finish_reason_for(
            upstream=self._upstream_finish, has_tool_calls=bool(self._tools), stopped=self._stop.stopped,
            completion_tokens=self.usage.completion_tokens if self.usage else None,
            max_tokens_sent=self._max_tokens_sent)
        out.append(self._choice({}, reason))
        return out


def chunk(choices: list[ChunkChoice], *, completion_id: str, created: int, model: str,
          usage: Usage | None = None, include_usage: bool = False) -> ChatCompletionChunk:
    out: ChatCompletionChunk = {
        "id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": choices,
    }
    if include_usage:
        out["usage"] = usage
    return out


def chunk_each(choices: list[ChunkChoice], *, completion_id: str, created: int, model: str,
               include_usage: bool = False) -> list[ChatCompletionChunk]:
    """`chunk([choice], ...)` of each choice delta (the same keys in the same order): what a stream sends, as
    clients merge deltas by index, chunk by chunk. Written out rather than calling `chunk` per delta: a call
    with keywords per chunk was ~2 % of a streamed request's instructions (callgrind, bench/stream_cpu.py). Each
    chunk is a copy of one made for the batch, its `choices` then set in place (the keys keep their order): a
    dict's copy is cheaper than building it key by key (22 chunks: ~51k -> ~35k instructions, callgrind;
    docs/performance.md, "First event round 9")."""
    head: ChatCompletionChunk = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                                 "model": model, "choices": []}
    if include_usage:
        head["usage"] = None
    copy = head.copy
    out: list[ChatCompletionChunk] = []
    for choice in choices:
        each = copy()
        each["choices"] = [choice]
        out.append(each)
    return out


def completion_to_chunks(completion: ChatCompletion, *, include_usage: bool) -> list[ChatCompletionChunk]:
    """Replay a whole answer as a stream, for models and modes that cannot stream upstream."""
    def make(choices: list[ChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        return chunk(choices, completion_id=completion["id"], created=completion["created"],
                     model=completion["model"], usage=usage, include_usage=include_usage)

    chunks: list[ChatCompletionChunk] = []
    for choice in completion["choices"]:
        message, index = choice["message"], choice["index"]
        deltas: list[Delta] = [{"role": "assistant", "content": ""}]
        if message.get("reasoning_content"):
            deltas.append({"reasoning_content": message["reasoning_content"]})
        if message["content"]:
            deltas.append({"content": message["content"]})
        for i, call in enumerate(message.get("tool_calls", [])):
            if call["type"] == "custom":
                deltas.append({"tool_calls": [{"index": i, "id": call["id"], "type": "custom",
                                               "custom": {"name": call["custom"]["name"],
                                                          "input": call["custom"]["input"]}}]})
            else:
                deltas.append({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                               "function": {"name": call["function"]["name"],
                                                            "arguments": call["function"]["arguments"]}}]})
        for delta in deltas:
            chunks.append(make([{"index": index, "delta": delta, "logprobs": None, "finish_reason": None}]))
        chunks.append(make([{"index": index, "delta": {}, "logprobs": None,
                             "finish_reason": choice["finish_reason"]}]))
    if include_usage:
        chunks.append(make([], completion["usage"]))
    return chunks
