"""A streamed chat answer's chunks put back together as the `chat.completion` they stand for.

Pure: core.openai.chat only. The response cache stores a stream that ended cleanly as one completion, so a
later request, streamed or not, gets the same answer (a stream replays it with
core.translate.chat_stream.completion_to_chunks). An answer that cannot be rebuilt faithfully (a choice
without its finish reason, no usage) gives None: it is not stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from cfai_cli.core.openai.chat import AnyToolCallOut, AssistantMessage, ChatCompletion, ChatCompletionChunk, Choice


class _Choice:
    __slots__ = ("calls", "content", "finish", "reasoning")

    def __init__(self) -> None:
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish: str | None = None

    def feed(self, delta: dict[str, Any]) -> None:
        if isinstance(delta.get("content"), str):
            self.content.append(delta["content"])
        if isinstance(delta.get("reasoning_content"), str):
            self.reasoning.append(delta["reasoning_content"])
        for call in delta.get("tool_calls") or ():
            slot = self.calls.setdefault(int(call.get("index", len(self.calls))), {"name": [], "args": []})
            for name in ("id", "type"):
                if call.get(name):
                    slot.setdefault(name, call[name])
            if isinstance(call.get("custom"), dict):  # cfai sends a custom call whole, in one delta
                slot["custom"] = call["custom"]
            function = call.get("function") or {}
            if function.get("name"):
                slot["name"].append(function["name"])
            if isinstance(function.get("arguments"), str):
                slot["args"].append(function["arguments"])

    def message(self) -> AssistantMessage | None:
        text = "".join(self.content)
        out: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
        if self.reasoning:
            out["reasoning_content"] = "".join(self.reasoning)
        calls: list[dict[str, Any]] = []
        for _, slot in sorted(self.calls.items()):
            if "id" not in slot:
                return None
            if slot.get("type") == "custom" or "custom" in slot:
                calls.append({"id": slot["id"], "type": "custom", "custom": slot.get("custom", {})})
            else:
                calls.append({"id": slot["id"], "type": "function",
                              "function": {"name": "".join(slot["name"]), "arguments": "".join(slot["args"])}})
        if calls:
            out["tool_calls"] = cast(list[AnyToolCallOut], calls)
        return cast(AssistantMessage, out)


def assemble_completion(chunks: Iterable[ChatCompletionChunk]) -> ChatCompletion | None:
    """The completion a clean stream's chunks add up to (id, created, model of its first chunk), or None."""
    head: ChatCompletionChunk | None = None
    usage: Any = None
    choices: dict[int, _Choice] = {}
    for chunk in chunks:
        head = head or chunk
        if isinstance(chunk.get("usage"), dict):
            usage = chunk.get("usage")
        for part in chunk.get("choices") or ():
            choice = choices.setdefault(int(part["index"]), _Choice())
            choice.feed(cast(dict[str, Any], part.get("delta") or {}))
            if part.get("finish_reason"):
                choice.finish = part["finish_reason"]
    if head is None or not choices or usage is None:
        return None
    out: list[Choice] = []
    for index, choice in sorted(choices.items()):
        message = choice.message()
        if message is None or choice.finish is None:
            return None
        out.append(cast(Choice, {"index": index, "message": message, "logprobs": None,
                                 "finish_reason": choice.finish}))
    return {"id": head["id"], "object": "chat.completion", "created": head["created"], "model": head["model"],
            "choices": out, "usage": usage}
