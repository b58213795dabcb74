"""Workers AI text-generation results, read by shape: native, chat.completion, text_completion, response.

Pure: standard library and cfai_cli.errors. Every family is normalised to `ParsedChoice`s so one
translator serves them all; the family is detected from the result, never assumed from the model id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cfai_cli.errors import UpstreamError


@dataclass(slots=True)
class ParsedToolCall:
    """A tool call as Workers AI answered it, in any of its dialects."""

    name: str
    arguments: str
    id: str | None = None


@dataclass(slots=True)
class ParsedChoice:
    """One choice of a Workers AI chat answer: text, reasoning, tool calls, why it ended."""

    text: str | None = None
    reasoning: str | None = None
    tool_calls: list[ParsedToolCall] = field(default_factory=list)
    finish_reason: str | None = None


@dataclass(slots=True)
class ParsedUsage:
    """The token counts a Workers AI answer reported."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None


@dataclass(slots=True)
class ParsedChat:
    """A Workers AI chat answer read whatever its dialect: its choices and usage."""

    dialect: str  # "native" | "chat" | "completion" | "responses"
    choices: list[ParsedChoice]
    usage: ParsedUsage | None


# Compiled on first use (re's cache), not at import: a streamed answer never splits a whole text (~0.4 M
# instructions of every one-shot `cfai chat`, docs/performance.md "One-shot CLI round 9").
_THINK = r"^\s*<think>(.*?)(?:</think>|$)"


def split_think(text: str) -> tuple[str | None, str]:
    """Native reasoning models may inline `<think>…</think>` before the answer (reference §2.8)."""
    match = re.match(_THINK, text, re.S)
    if not match:
        # Some templates open the think block in the prompt, so only the closing tag appears.
        head, sep, tail = text.partition("</think>")
        if sep and "<think>" not in head:
            return head.strip() or None, tail.lstrip()
        return None, text
    return match.group(1).strip() or None, text[match.end() :].lstrip()


def json_text(value: Any) -> str:
    """Text for a value that should have been text: JSON mode answers arrive as objects."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False)


def parse_tool_call(raw: Any) -> ParsedToolCall | None:
    """Any of the four tool-call shapes (flat, llama-4, OpenAI, responses) -> one shape."""
    if not isinstance(raw, Mapping):
        return None
    fn = raw.get("function")
    fn = fn if isinstance(fn, Mapping) else {}
    name = fn.get("name") or raw.get("name")
    if not isinstance(name, str) or not name:
        return None
    args = fn.get("arguments", raw.get("arguments"))
    if args is None:
        args = raw.get("parameters", {})
    # Responses function_call items carry both: `id` names the output item, `call_id` the call itself.
    call_id = raw.get("call_id") or raw.get("id")
    return ParsedToolCall(
        name=name,
        arguments=json_text(args) if not isinstance(args, str) else (args or "{}"),
        id=call_id if isinstance(call_id, str) and call_id else None,
    )


def parse_tool_calls(raw: Any) -> list[ParsedToolCall]:
    if not isinstance(raw, list):
        return []
    return [call for call in (parse_tool_call(item) for item in raw) if call is not None]


def _int(value: Any) -> int | None:
    if type(value) is int:  # the usual count, at once (a bool is not one: its type is bool)
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _mapping(value: object) -> bool:
    return type(value) is dict or isinstance(value, Mapping)


def parse_usage(raw: Any) -> ParsedUsage | None:
    if type(raw) is not dict and not isinstance(raw, Mapping):  # a dict first: an ABC check is a Python call
        return None
    prompt = _int(raw.get("prompt_tokens", raw.get("input_tokens")))
    completion = _int(raw.get("completion_tokens", raw.get("output_tokens")))
    if prompt is None and completion is None:
        return None
    # Empty or absent details count nothing: no lookups in them (a stream's usage event, every answer's usage).
    details = raw.get("prompt_tokens_details") or raw.get("input_tokens_details")
    out_details = raw.get("completion_tokens_details") or raw.get("output_tokens_details")
    return ParsedUsage(
        prompt_tokens=prompt or 0,
        completion_tokens=completion or 0,
        cached_tokens=_int(details.get("cached_tokens")) if details and _mapping(details) else None,
        reasoning_tokens=_int(out_details.get("reasoning_tokens")) if out_details and _mapping(out_details) else None,
    )


def _reasoning_of(message: Mapping[str, Any]) -> str | None:
    value = message.get("reasoning_content") or message.get("reasoning")
    return value if isinstance(value, str) and value else None


def _chat_choice(raw: Mapping[str, Any]) -> ParsedChoice:
    message = raw.get("message")
    if not isinstance(message, Mapping):
        # text_completion choices carry `text` instead of a message.
        thought, answer = split_think(json_text(raw.get("text")))
        return ParsedChoice(text=answer, reasoning=thought, finish_reason=_finish(raw))
    content = message.get("content")
    reasoning = _reasoning_of(message)
    text = json_text(content) if content is not None else None
    if text and reasoning is None:
        reasoning, text = split_think(text)
    return ParsedChoice(
        text=text,
        reasoning=reasoning,
        tool_calls=parse_tool_calls(message.get("tool_calls")),
        finish_reason=_finish(raw),
    )


def _finish(raw: Mapping[str, Any]) -> str | None:
    value = raw.get("finish_reason")
    return value if isinstance(value, str) and value else None


def _responses_choice(output: list[Any]) -> ParsedChoice:
    choice = ParsedChoice()
    texts: list[str] = []
    thoughts: list[str] = []
    for item in output:
        if not isinstance(item, Mapping):
            continue
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or []:
                if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    texts.append(part["text"])
        elif kind == "reasoning":
            for part in list(item.get("content") or []) or list(item.get("summary") or []):
                if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    thoughts.append(part["text"])
        elif kind == "function_call":
            call = parse_tool_call(item)
            if call:
                choice.tool_calls.append(call)
    choice.text = "".join(texts) if texts else None
    choice.reasoning = "\n".join(thoughts) or None
    return choice


def parse_chat_result(result: Any) -> ParsedChat:
    """Normalise whatever a text model returned inside `result`."""
    if not isinstance(result, Mapping):
        raise UpstreamError("Workers AI returned a text-generation result that is not an object.")
    usage = parse_usage(result.get("usage"))
    choices = result.get("choices")
    if isinstance(choices, list) and choices:
        parsed = [_chat_choice(c) for c in choices if isinstance(c, Mapping)]
        kind = "completion" if result.get("object") == "text_completion" else "chat"
        return ParsedChat(kind, parsed or [ParsedChoice(text="")], usage)
    output = result.get("output")
    if isinstance(output, list):
        choice = _responses_choice(output)
        details = result.get("incomplete_details")
        if result.get("status") == "incomplete" and not (
                isinstance(details, Mapping) and details.get("reason") == "content_filter"):
            choice.finish_reason = "length"
        return ParsedChat("responses", [choice], usage)
    if "response" in result or "tool_calls" in result:
        reasoning, text = split_think(json_text(result.get("response")))
        choice = ParsedChoice(
            text=text,
            reasoning=reasoning,
            tool_calls=parse_tool_calls(result.get("tool_calls")),
            finish_reason=_finish(result),
        )
        return ParsedChat("native", [choice], usage)
    raise UpstreamError(
        "Workers AI returned an empty or unrecognised text-generation result "
        f"(keys: {', '.join(sorted(map(str, result))) or 'none'})."
    )
