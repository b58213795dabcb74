"""Chat Completions chunks -> Anthropic Messages stream events (message_start, content_block_*, message_delta,
message_stop, error), one chunk at a time.

Pure: the standard library, core and errors. Each event is a dict with its `type`; the route writes it as
`event: <type>` + `data: <json>`. Blocks come in the order their first piece arrives (thinking, text,
tool_use), each with the next index, and a block is stopped before the next one starts, as Anthropic does.
Stop sequences: only text that could still be the start of one is held back, and nothing after a match is
ever sent; `done` then tells the caller to stop reading upstream and call `finish`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cfai_cli.core.translate.anthropic_out import (
    THINKING_SIGNATURE,
    first_hit,
    stop_reason,
    tool_use_id,
    usage,
)
from cfai_cli.errors import CfaiError

if TYPE_CHECKING:
    from cfai_cli.core.translate.anthropic_in import AnthropicPlan

Event = dict[str, Any]


class MessageStream:
    """One Anthropic message stream: `start()`, then `feed(chunk)` per chat chunk, then `finish()` (or
    `error()` when the upstream fails mid-way)."""

    def __init__(self, plan: AnthropicPlan, *, message_id: str, input_tokens_estimate: int) -> None:
        self.plan = plan
        self.message_id = message_id
        self.input_tokens_estimate = input_tokens_estimate
        self.done = False  # a stop sequence hit: read no further
        self._index = -1  # index of the newest block
        self._open: str | None = None  # "thinking" | "text" | "tool_use"
        self._call: int | None = None  # the chat tool call index of the open tool_use block
        self._calls_seen: set[int] = set()
        self._held = ""  # text that may be the start of a stop sequence
        self._hit: str | None = None
        self._finish_reason: str | None = None
        self._usage: Mapping[str, Any] | None = None
        self._has_tool_use = False
        self._finished = False

    # ---- the events around the blocks ------------------------------------------------------------

    def start(self) -> list[Event]:
        message: Event = {"id": self.message_id, "type": "message", "role": "assistant", "model": self.plan.model,
                   "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": usage(self.input_tokens_estimate, 0)}
        return [{"type": "message_start", "message": message}, {"type": "ping"}]

    def finish(self, usage_seen: Mapping[str, Any] | None = None) -> list[Event]:
        """Close the open block and the message; `usage_seen` (chat usage) wins over the chunks' own."""
        if self._finished:
            return []
        self._finished = True
        events = [] if self.done else self._flush_text()
        events += self._close()
        used = usage_seen or self._usage
        if used:
            full = usage(int(used.get("prompt_tokens") or 0), int(used.get("completion_tokens") or 0),
                         used.get("prompt_tokens_details"))
            delta_usage = {k: full[k] for k in ("input_tokens", "output_tokens", "cache_read_input_tokens")}
        else:
            delta_usage = {"output_tokens": 0}
        reason = stop_reason(self._finish_reason, stopped=self._hit is not None, has_tool_use=self._has_tool_use)
        events.append({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": self._hit},
                       "usage": delta_usage})
        events.append({"type": "message_stop"})
        return events

    def error(self, exc: CfaiError) -> list[Event]:
        """The `error` event for a failure mid-stream (no message_stop follows, as with Anthropic)."""
        self._finished = True
        return [exc.to_anthropic()]

    # ---- chunks ------------------------------------------------------------------------------------

    def feed(self, chunk: Mapping[str, Any]) -> list[Event]:
        if self.done or self._finished:
            return []
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        events: list[Event] = []
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("reasoning_content"):
                events += self._thinking(delta["reasoning_content"])
            if delta.get("content"):
                events += self._text(delta["content"])
                if self.done:
                    return events
            for call in delta.get("tool_calls") or []:
                events += self._tool(call)
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
        return events

    def _thinking(self, piece: str) -> list[Event]:
        events = self._switch("thinking", {"type": "thinking", "thinking": "", "signature": ""})
        events.append(self._delta({"type": "thinking_delta", "thinking": piece}))
        return events

    def _text(self, piece: str) -> list[Event]:
        buf = self._held + piece
        hit = first_hit(buf, self.plan.stop_sequences)
        if hit is not None:
            self.done, self._hit, self._held = True, hit[1], ""
            return self._emit_text(buf[: hit[0]])
        keep = 0
        for stop in self.plan.stop_sequences:
            for n in range(min(len(stop) - 1, len(buf)), keep, -1):
                if buf.endswith(stop[:n]):
                    keep = n
                    break
        self._held = buf[len(buf) - keep:]
        return self._emit_text(buf[: len(buf) - keep])

    def _emit_text(self, text: str) -> list[Event]:
        if not text:
            return []
        events = self._switch("text", {"type": "text", "text": ""})
        events.append(self._delta({"type": "text_delta", "text": text}))
        return events

    def _flush_text(self) -> list[Event]:
        """Held text goes out when the text block ends: no later text can complete a stop sequence in it."""
        held, self._held = self._held, ""
        return self._emit_text(held)

    def _tool(self, call: Mapping[str, Any]) -> list[Event]:
        index = int(call.get("index") or 0)
        fn = call.get("function") or {}
        events: list[Event] = []
        if self._open != "tool_use" or self._call != index:
            if index in self._calls_seen:
                # A piece for a call whose block is already stopped: Anthropic cannot reopen it. The chat
                # pipeline streams calls one after another, so this does not happen there.
                return []
            events += self._flush_text()
            call_id = str(call.get("id") or f"{self.message_id}_{index}")
            name = self.plan.anthropic_name(str(fn.get("name") or ""))
            events += self._switch("tool_use", {"type": "tool_use", "id": tool_use_id(call_id), "name": name,
                                                "input": {}}, force=True)
            self._call = index
            self._calls_seen.add(index)
            self._has_tool_use = True
        arguments = fn.get("arguments")
        if arguments:
            events.append(self._delta({"type": "input_json_delta", "partial_json": str(arguments)}))
        return events

    # ---- blocks ------------------------------------------------------------------------------------

    def _switch(self, kind: str, block: Event, *, force: bool = False) -> list[Event]:
        """Start a block of `kind` unless one is open (`force`: always a new one), stopping the open one."""
        if self._open == kind and not force:
            return []
        events = [] if kind == "text" else self._flush_text()
        events += self._close()
        self._index += 1
        self._open = kind
        events.append({"type": "content_block_start", "index": self._index, "content_block": block})
        return events

    def _close(self) -> list[Event]:
        if self._open is None:
            return []
        events: list[Event] = []
        if self._open == "thinking":
            events.append(self._delta({"type": "signature_delta", "signature": THINKING_SIGNATURE}))
        events.append({"type": "content_block_stop", "index": self._index})
        self._open = self._call = None
        return events

    def _delta(self, delta: Event) -> Event:
        return {"type": "content_block_delta", "index": self._index, "delta": delta}
