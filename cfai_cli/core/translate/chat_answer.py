"""Workers AI answers -> Chat Completions: usage, stop sequences, finish reasons, tool calls and the
`chat.completion` object, as pure functions. The request direction is core.translate.chat; the stream
translator (core.translate.chat_stream) uses the same stop, finish and id rules from here.

Pure: the standard library, cfai_cli.core. Ids and timestamps are passed in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from cfai_cli.core.openai.chat import (
    AnyToolCallOut,
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    FinishReason,
    Usage,
)
from cfai_cli.core.translate.chat import WorkersChatCall
from cfai_cli.core.translate.toolset import ToolSet, custom_input
from cfai_cli.core.workers.chat import ParsedChat, ParsedChoice, ParsedToolCall, ParsedUsage

_FINISH_ALIASES: dict[str, FinishReason] = {
    "stop": "stop", "eos": "stop", "end_turn": "stop", "stop_sequence": "stop",
    "length": "length", "max_tokens": "length", "model_length": "length",
    "tool_calls": "tool_calls", "tool_use": "tool_calls", "function_call": "tool_calls",
    "content_filter": "content_filter",
}


def estimate_tokens(text: str) -> int:
    """A rough count (4 characters a token) for when Workers AI sends no usage."""
    return math.ceil(len(text) / 4) if text else 0


def prompt_text(req: ChatCompletionRequest) -> str:
    return "\n".join(m.text() for m in req.messages)


def first_stop(text: str, stops: Iterable[str]) -> int:
    """Where to cut `text`: the start of the stop sequence that is *completed* first, or -1.

    Generation stops token by token, so the sequence that ends first wins (the longer one on a tie), not
    the one that starts first; this also makes the answer independent of how a stream was chunked.
    """
    best_end = best_start = -1
    for stop in stops:
        start = text.find(stop) if stop else -1
        if start < 0:
            continue
        end = start + len(stop)
        if best_end < 0 or end < best_end or (end == best_end and start < best_start):
            best_end, best_start = end, start
    return best_start


def truncate_at_stop(text: str, stops: Iterable[str]) -> tuple[str, bool]:
    cut = first_stop(text, stops)
    return (text[:cut], True) if cut >= 0 else (text, False)


def finish_reason_for(
    *, upstream: str | None, has_tool_calls: bool, stopped: bool, completion_tokens: int | None,
    max_tokens_sent: int | None,
) -> FinishReason:
    if has_tool_calls:
        return "tool_calls"
    if stopped:
        return "stop"
    if upstream:
        return _FINISH_ALIASES.get(upstream, "stop")
    if max_tokens_sent is not None and completion_tokens is not None and completion_tokens >= max_tokens_sent:
        return "length"
    return "stop"


def usage_out(usage: ParsedUsage) -> Usage:
    out: Usage = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens or 0},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens or 0},
    }
    return out


def sum_usage(usages: Iterable[ParsedUsage]) -> ParsedUsage:
    total = ParsedUsage()
    for u in usages:
        total.prompt_tokens = max(total.prompt_tokens, u.prompt_tokens)  # same prompt for every choice
        total.completion_tokens += u.completion_tokens
        if u.cached_tokens is not None:
            total.cached_tokens = max(total.cached_tokens or 0, u.cached_tokens)
        if u.reasoning_tokens is not None:
            total.reasoning_tokens = (total.reasoning_tokens or 0) + u.reasoning_tokens
    return total


def openai_call_id(upstream: object, new_call_id: Callable[[], str]) -> str:
    """OpenAI-style `call_…` ids: upstream ids are kept only when they already look like one."""
    return upstream if isinstance(upstream, str) and upstream.startswith("call_") else new_call_id()


def tool_call_out(call: ParsedToolCall, call_id: str, tools: ToolSet) -> AnyToolCallOut:
    """One call as the chat client defined its tool: custom tools get their input back, namespaced
    functions their own name (when unique)."""
    origin = tools.origin(call.name)
    if origin.kind == "custom":
        return {"id": call_id, "type": "custom", "custom": {"name": origin.name, "input": custom_input(call.arguments)}}
    return {"id": call_id, "type": "function", "function": {"name": tools.chat_name(call.name),
                                                             "arguments": call.arguments}}


def tool_calls_out(choice: ParsedChoice, new_call_id: Callable[[], str], tools: ToolSet | None = None,
                   limit: int | None = None) -> list[AnyToolCallOut]:
    calls = choice.tool_calls[:limit] if limit is not None else choice.tool_calls
    return [tool_call_out(call, openai_call_id(call.id, new_call_id), tools or ToolSet()) for call in calls]


def from_workers_chat(
    req: ChatCompletionRequest,
    call: WorkersChatCall,
    results: Sequence[ParsedChat],
    *,
    completion_id: str,
    created: int,
    new_call_id: Callable[[], str],
) -> ChatCompletion:
    """One `chat.completion` from the answers of one or more /ai/run calls (one per choice)."""
    choices: list[Choice] = []
    usages: list[ParsedUsage] = []
    for result in results:
        for parsed in result.choices:
            if call.forced_tools and not parsed.tool_calls:
                from cfai_cli.core.translate.salvage import salvage_tool_calls  # forced tools only: not at import

                salvaged = salvage_tool_calls(parsed.text, call.forced_tools)
                if salvaged:
                    parsed = replace(parsed, tool_calls=salvaged, text=None)
            text, stopped = truncate_at_stop(parsed.text or "", call.stop)
            tool_calls = tool_calls_out(parsed, new_call_id, call.tools, call.max_tool_calls)
            completion_tokens = result.usage.completion_tokens if result.usage else None
            message: AssistantMessage = {
                "role": "assistant",
                "content": text if (text or not tool_calls) else None,
                "refusal": None,
            }
            if tool_calls:
                message["tool_calls"] = tool_calls
            if parsed.reasoning:
                message["reasoning_content"] = parsed.reasoning
            choices.append({
                "index": len(choices),
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason_for(
                    upstream=parsed.finish_reason, has_tool_calls=bool(tool_calls), stopped=stopped,
                    completion_tokens=completion_tokens, max_tokens_sent=call.max_tokens_sent),
            })
        usages.append(result.usage or ParsedUsage(
            prompt_tokens=estimate_tokens(prompt_text(req)),
            completion_tokens=sum(estimate_tokens((c.text or "") + (c.reasoning or "")) for c in result.choices),
        ))
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": call.model_id,
        "choices": choices,
        "usage": usage_out(sum_usage(usages)),
    }
