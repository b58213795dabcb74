"""One chat answer from the shared service, rendered: streamed or whole, text or the exact OpenAI JSON.

Imports service, core (through service types) and cli.render. Only imported when `cfai chat` runs, so its
heavy imports (httpx, pydantic) stay out of `cfai --help`. Used by one-shot and interactive chat alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cfai_cli.cli.render import AnswerPrinter, Terminal
from cfai_cli.core.openai.chat import ChatCompletionRequest, FunctionCallOut, ToolCallDelta, ToolCallOut
from cfai_cli.service.chat import create_chat_completion, open_chat_stream
from cfai_cli.service.context import Context


@dataclass
class Reply:
    """What the model said in choice 0: kept as the assistant turn of an interactive chat."""

    content: str = ""
    tool_calls: list[ToolCallOut] = field(default_factory=list)


async def ask(ctx: Context, req: ChatCompletionRequest, term: Terminal, *, json_out: bool) -> Reply:
    """Send `req` and render its answer; streams when `req.stream` is set."""
    if req.stream:
        return await _ask_stream(ctx, req, term, json_out=json_out)
    return await _ask_whole(ctx, req, term, json_out=json_out)


async def _ask_whole(ctx: Context, req: ChatCompletionRequest, term: Terminal, *, json_out: bool) -> Reply:
    with term.waiting("waiting for the model…"):
        completion = await create_chat_completion(ctx, req)
    message = completion["choices"][0]["message"]
    # cfai chat offers no custom tools, so every call it can get back is a function call.
    calls = [call for call in message.get("tool_calls", []) if call["type"] == "function"]
    reply = Reply(content=message["content"] or "", tool_calls=calls)
    if json_out:
        term.json(completion)
        return reply
    reasoning = message.get("reasoning_content")
    if reasoning:
        term.reasoning(reasoning)
        term.end_err_line()
    if reply.content:
        term.markdown(reply.content)
    for call in reply.tool_calls:
        term.tool_call(call["function"]["name"], call["function"]["arguments"])
    if len(completion["choices"]) > 1:
        term.note(f"(showing 1 of {len(completion['choices'])} choices; --json shows them all)")
    term.usage(completion["model"], completion["usage"])
    return reply


async def _ask_stream(ctx: Context, req: ChatCompletionRequest, term: Terminal, *, json_out: bool) -> Reply:
    # NDJSON is for machines: no spinner or live region competing with it on a terminal.
    printer = None if json_out else AnswerPrinter(term)
    reply = Reply()
    calls: dict[int, ToolCallOut] = {}
    model, usage, choices = req.model, None, 1
    try:
        async with await open_chat_stream(ctx, req) as stream:
            async for chunk in stream:
                if json_out:
                    term.json(chunk, compact=True)
                model = chunk["model"]
                usage = chunk.get("usage") or usage
                for choice in chunk["choices"]:
                    choices = max(choices, choice["index"] + 1)
                    if choice["index"] != 0:
                        continue
                    delta = choice["delta"]
                    if printer is not None and delta.get("reasoning_content"):
                        printer.reasoning(delta["reasoning_content"])
                    if delta.get("content"):
                        reply.content += delta["content"]
                        if printer is not None:
                            printer.text(delta["content"])
                    for part in delta.get("tool_calls", []):
                        _merge_tool_call(calls, part)
    finally:
        # Also on Ctrl-C (cancellation): the live region and spinner must let go of the terminal.
        if printer is not None:
            printer.close()
    reply.tool_calls = [calls[i] for i in sorted(calls)]
    if printer is not None:
        for call in reply.tool_calls:
            term.tool_call(call["function"]["name"], call["function"]["arguments"])
        if choices > 1:
            term.note(f"(showing 1 of {choices} choices; --json shows them all)")
        term.usage(model, usage)
    return reply


def _merge_tool_call(calls: dict[int, ToolCallOut], part: ToolCallDelta) -> None:
    """OpenAI tool-call deltas: id and name in the first fragment, arguments spread over the rest."""
    call = calls.setdefault(part["index"], ToolCallOut(id="", type="function",
                                                       function=FunctionCallOut(name="", arguments="")))
    if part.get("id"):
        call["id"] = part["id"]
    function = part.get("function") or {}
    if function.get("name"):
        call["function"]["name"] = function["name"]
    call["function"]["arguments"] += function.get("arguments") or ""
