"""Anthropic Messages stream events -> chat.completion.chunk objects, one event at a time (an Anthropic
upstream's stream, see core.translate.anthropic_egress for the request and whole answers).

Pure: the standard library and core. `feed(type, data)` per event: message_start gives the role chunk;
text, thinking and tool_use blocks give content, reasoning_content and tool_calls deltas (a call's id and
name when its block starts, then its arguments piece by piece); message_delta holds the stop reason and the
output tokens; message_stop gives the finish chunk and then the usage chunk (choices empty), and sets `done`.
ping, signature and citation deltas, and block types chat has no place for, give nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cfai_cli.core.translate.anthropic_egress import chat_usage, completion_id, finish_reason

Chunk = dict[str, Any]


class ChunkStream:
    """One Anthropic stream as chat chunks; `created` is passed in (core has no clock), `names` maps changed
    tool names back (anthropic_egress.chat_names)."""

    def __init__(self, *, created: int, names: Mapping[str, str] | None = None) -> None:
        self.created = created
        self._names = names or {}
        self.done = False  # message_stop seen: the stream is complete
        self._id = completion_id("")
        self._model = ""
        self._usage: dict[str, Any] = {}
        self._stop_reason: str | None = None
        self._calls: dict[int, int] = {}  # block index -> chat tool call index
        self._argued: set[int] = set()  # tool call blocks whose arguments have begun

    def _chunk(self, delta: Mapping[str, Any], finish: str | None = None) -> Chunk:
        return {"id": self._id, "object": "chat.completion.chunk", "created": self.created, "model": self._model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    def feed(self, kind: str, data: Mapping[str, Any]) -> list[Chunk]:
        """The chunks for one event (`kind` is its `type`)."""
        if kind == "content_block_delta":
            return self._delta(int(data.get("index") or 0), data.get("delta") or {})
        if kind == "content_block_start":
            return self._start(int(data.get("index") or 0), data.get("content_block") or {})
        if kind == "message_start":
            message = data.get("message") or {}
            self._id = completion_id(str(message.get("id") or ""))
            self._model = str(message.get("model") or "")
            self._usage.update(message.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "message_delta":
            self._stop_reason = (data.get("delta") or {}).get("stop_reason") or self._stop_reason
            # Counts here are cumulative (and may repeat the input's); the latest wins.
            self._usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
            return []
        if kind == "message_stop":
            self.done = True
            usage = {"id": self._id, "object": "chat.completion.chunk", "created": self.created,
                     "model": self._model, "choices": [], "usage": chat_usage(self._usage)}
            return [self._chunk({}, finish_reason(self._stop_reason)), usage]
        if kind == "content_block_stop":
            index = int(data.get("index") or 0)
            if index in self._calls and index not in self._argued:
                # A call without arguments streams none; "{}" keeps what the client accumulates valid JSON.
                return [self._chunk({"tool_calls": [{"index": self._calls[index], "function": {"arguments": "{}"}}]})]
        return []  # ping, events of later API versions

    def _start(self, index: int, block: Mapping[str, Any]) -> list[Chunk]:
        kind = str(block.get("type"))
        if kind == "tool_use":
            call = self._calls[index] = len(self._calls)
            name = str(block.get("name"))
            return [self._chunk({"tool_calls": [{"index": call, "id": block.get("id"), "type": "function",
                                                 "function": {"name": self._names.get(name, name),
                                                              "arguments": ""}}]})]
        if kind == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        if kind == "thinking" and block.get("thinking"):
            return [self._chunk({"reasoning_content": block["thinking"]})]
        return []

    def _delta(self, index: int, delta: Mapping[str, Any]) -> list[Chunk]:
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [self._chunk({"content": delta["text"]})]
        if kind == "thinking_delta" and delta.get("thinking"):
            return [self._chunk({"reasoning_content": delta["thinking"]})]
        if kind == "input_json_delta" and delta.get("partial_json") and index in self._calls:
            self._argued.add(index)
            return [self._chunk({"tool_calls": [{"index": self._calls[index],
                                                 "function": {"arguments": delta["partial_json"]}}]})]
        return []
