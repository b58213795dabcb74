"""Forced tool calls on every Workers AI model: salvage the text, then ask once more, else a clear error.

Imports core, errors and the upstream client type. When `tool_choice` forces a call and a model answers in
text (native models may ignore `tool_choice`: reference §2.5, §14.11), the answer is first read as a call
written out as JSON (core.translate.salvage), then asked again once in JSON mode with the function's schema
(core.translate.forced). The retry's tokens are added to the answer's usage. If that fails too the client
gets `ToolCallFailed` (502 `tool_call_failed`), never text where it demanded a call.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from cfai_cli.core.openai.chat import ChatCompletionRequest
from cfai_cli.core.translate.chat import WorkersChatCall, schema_fallback
from cfai_cli.core.translate.chat_answer import estimate_tokens, prompt_text
from cfai_cli.core.translate.forced import calls_from_retry, retry_body
from cfai_cli.core.translate.salvage import salvage_tool_calls
from cfai_cli.core.workers.chat import ParsedChat, ParsedChoice, ParsedUsage, parse_chat_result
from cfai_cli.errors import InvalidRequest, ToolCallFailed
from cfai_cli.upstream.workers import WorkersAIClient


def _failed(call: WorkersChatCall, why: str) -> ToolCallFailed:
    names = ", ".join(f"'{n}'" for n in call.forced_tools)
    return ToolCallFailed(
        f"The model {call.model_id} did not produce the required tool call ({names}): it answered in text, and "
        f"{why}. Try again, use a model that calls tools reliably, or set tool_choice to 'auto'.",
        param="tool_choice")


def _estimated(req: ChatCompletionRequest, choices: list[ParsedChoice]) -> ParsedUsage:
    return ParsedUsage(prompt_tokens=estimate_tokens(prompt_text(req)),
                       completion_tokens=sum(estimate_tokens((c.text or "") + (c.reasoning or "")) for c in choices))


def _plus(a: ParsedUsage, b: ParsedUsage) -> ParsedUsage:
    def add(x: int | None, y: int | None) -> int | None:
        return None if x is None and y is None else (x or 0) + (y or 0)

    return ParsedUsage(a.prompt_tokens + b.prompt_tokens, a.completion_tokens + b.completion_tokens,
                       add(a.cached_tokens, b.cached_tokens), add(a.reasoning_tokens, b.reasoning_tokens))


async def _ask_again(req: ChatCompletionRequest, call: WorkersChatCall, client: WorkersAIClient,
                     choice: ParsedChoice) -> tuple[ParsedChoice, ParsedUsage]:
    body = retry_body(call)
    if body is None:
        raise _failed(call, "no forced function was offered to ask again with")
    try:
        try:
            raw: Any = await client.run(call.model_id, body, affinity=call.affinity)
        except InvalidRequest as exc:
            fallback = schema_fallback(body, exc) if not call.chat_dialect else None
            if fallback is None:
                raise
            raw = await client.run(call.model_id, fallback, affinity=call.affinity)
    except InvalidRequest as exc:
        # The client's request was fine: it is the model that could not meet the schema ("JSON Mode couldn't
        # be met"), so this is not a 400.
        raise _failed(call, f"asked again in JSON mode, Workers AI refused: {exc.message}") from None
    again = parse_chat_result(raw)
    text = again.choices[0].text if again.choices else None
    calls = calls_from_retry(text, call.forced_tools)
    if not calls:
        raise _failed(call, "asked again in JSON mode, it still gave no valid call")
    usage = again.usage or ParsedUsage(
        prompt_tokens=estimate_tokens(prompt_text(req)) + estimate_tokens(body["messages"][-1]["content"]),
        completion_tokens=estimate_tokens(text or ""))
    return replace(choice, text=None, tool_calls=calls, finish_reason="tool_calls"), usage


async def ensure_forced_calls(req: ChatCompletionRequest, call: WorkersChatCall, results: list[ParsedChat],
                              client: WorkersAIClient) -> list[ParsedChat]:
    """`results` with every choice holding a tool call when `call` forces one (raises ToolCallFailed)."""
    if not call.forced_tools:
        return results
    out: list[ParsedChat] = []
    for result in results:
        choices: list[ParsedChoice] = []
        extra: list[ParsedUsage] = []
        for choice in result.choices:
            if not choice.tool_calls:
                salvaged = salvage_tool_calls(choice.text, call.forced_tools)
                if salvaged:
                    choice = replace(choice, text=None, tool_calls=salvaged)
                else:
                    choice, usage = await _ask_again(req, call, client, choice)
                    extra.append(usage)
            choices.append(choice)
        total = result.usage
        if extra:
            total = total or _estimated(req, result.choices)
            for more in extra:
                total = _plus(total, more)
        out.append(ParsedChat(result.dialect, choices, total))
    return out
