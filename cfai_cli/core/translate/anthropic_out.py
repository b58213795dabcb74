"""Chat Completions answers -> Anthropic `message` objects, and the rules the stream translator shares.

Pure: the standard library, core and errors. Field for field what the anthropic SDK's `Message` declares
(2.15): a thinking block (from `reasoning_content`), a text block, then tool_use blocks; stop sequences are
applied here, since cfai never sends them upstream (core.translate.anthropic_in).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cfai_cli.core import jsonfast
from cfai_cli.core.openai.chat import ChatCompletion

if TYPE_CHECKING:
    from cfai_cli.core.translate.anthropic_in import AnthropicPlan

# Anthropic signs its thinking so it can check replayed history; cfai drops thinking from history, so this
# only fills the field the SDK requires (a client that replays it sends it back unread).
THINKING_SIGNATURE = "cfai-unsigned"
SERVICE_TIER = "standard"
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                 "content_filter": "refusal"}
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_-]")


def tool_use_id(call_id: str) -> str:
    """A `toolu_` id for a chat tool call id, the same every time (a later tool_result carries it back to the
    model as the call's id, so it only has to be stable); Anthropic ids hold letters, digits, _ and -."""
    if call_id.startswith("toolu_") and not _UNSAFE_ID.search(call_id):
        return call_id
    safe = _UNSAFE_ID.sub("", call_id.removeprefix("call_"))
    return f"toolu_{safe}" if safe else "toolu_" + hashlib.sha1(call_id.encode()).hexdigest()[:24]


def tool_input(arguments: str | None) -> dict[str, Any]:
    """A call's arguments as the object Anthropic's `input` must be (`{}` when they are not a JSON object)."""
    try:
        value = jsonfast.loads_text(arguments or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def first_hit(text: str, stops: Sequence[str]) -> tuple[int, str] | None:
    """(where to cut, which sequence) for the stop sequence completed first in `text` (the longer on a
    tie, as core.translate.chat_answer.first_stop decides), or None."""
    best: tuple[int, int, str] | None = None  # (end, -length, stop)
    for stop in stops:
        start = text.find(stop) if stop else -1
        if start >= 0 and (best is None or (start + len(stop), -len(stop)) < best[:2]):
            best = (start + len(stop), -len(stop), stop)
    return (best[0] + best[1], best[2]) if best else None


def stop_reason(finish_reason: str | None, *, stopped: bool, has_tool_use: bool) -> str:
    if stopped:
        return "stop_sequence"
    if finish_reason == "stop" and has_tool_use:
        return "tool_use"
    return _STOP_REASONS.get(finish_reason or "stop", "end_turn")


def usage(prompt_tokens: int, completion_tokens: int, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Anthropic usage: `input_tokens` excludes tokens read from a prompt cache (counted apart)."""
    cached = int((details or {}).get("cached_tokens") or 0)
    return {"input_tokens": max(prompt_tokens - cached, 0), "output_tokens": completion_tokens,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached, "service_tier": SERVICE_TIER}


def to_message(completion: ChatCompletion, plan: AnthropicPlan, *, message_id: str) -> dict[str, Any]:
    """The Anthropic Message for a chat completion (its first choice: the route asks for n=1)."""
    choice = completion["choices"][0]
    message = choice["message"]
    content: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content")
    if reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": THINKING_SIGNATURE})
    text = message.get("content") or ""
    hit = first_hit(text, plan.stop_sequences)
    stopped = hit is not None
    if hit is not None:
        text = text[: hit[0]]
    if text:
        content.append({"type": "text", "text": text})
    has_tools = False
    if not stopped:  # generation ends at a stop sequence: no call after it was made
        for call in message.get("tool_calls") or []:
            if call["type"] != "function":
                continue
            has_tools = True
            content.append({"type": "tool_use", "id": tool_use_id(call["id"]),
                            "name": plan.anthropic_name(call["function"]["name"]),
                            "input": tool_input(call["function"]["arguments"])})
    used = completion.get("usage")
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": plan.model,
        "content": content,
        "stop_reason": stop_reason(choice["finish_reason"], stopped=stopped, has_tool_use=has_tools),
        "stop_sequence": hit[1] if hit else None,
        "usage": usage(used["prompt_tokens"], used["completion_tokens"], used.get("prompt_tokens_details"))
        if used else usage(0, 0),
    }
