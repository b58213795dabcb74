"""`cfai chat --responses` / `--continue`: answers through the Responses API service, rendered.

Imports service, store, core and cli.render; only imported when such a chat runs. The same service
functions back `POST /v1/responses`, so the CLI exercises exactly the proxy's path. Each stored answer's
id is remembered in the data directory so `cfai chat -c` continues the last conversation; the
interactive variant chains its turns by `previous_response_id` and reuses cli.interactive's loop.
"""

from __future__ import annotations

from typing import Any

from cfai_cli.cli.common import validate_body
from cfai_cli.cli.render import AnswerPrinter, Terminal
from cfai_cli.core.openai.responses import CreateResponseRequest
from cfai_cli.errors import InvalidRequest
from cfai_cli.service.context import Context
from cfai_cli.service.responses import create_response, open_response_stream, response_store
from cfai_cli.settings import Settings
from cfai_cli.store.responses import ResponseStore

LAST_RESPONSE = "last_response_id"


def last_response_id(settings: Settings) -> str:
    """The id `--continue` continues from, or a clear error when there is none."""
    found = ResponseStore(settings.database).state(LAST_RESPONSE) if settings.database.exists() else None
    if not found:
        raise InvalidRequest("There is no conversation to continue yet: ask something with `cfai chat "
                             "--responses` first.", param="--continue", code="no_conversation")
    return found


def build_request(body: dict[str, Any], from_file: str | None) -> CreateResponseRequest:
    return validate_body(CreateResponseRequest, body, from_file)


def _usage(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """Responses usage in the chat terms Terminal.usage prints."""
    if not usage:
        return None
    return {"prompt_tokens": usage.get("input_tokens", 0), "completion_tokens": usage.get("output_tokens", 0)}


def _remember(ctx: Context, response: dict[str, Any]) -> None:
    if response.get("store") and response.get("id"):
        response_store(ctx).set_state(LAST_RESPONSE, response["id"])


def _show_calls(term: Terminal, output: list[dict[str, Any]]) -> None:
    for item in output:
        if item["type"] == "function_call":
            term.tool_call(item["name"], item["arguments"])


async def respond(ctx: Context, req: CreateResponseRequest, term: Terminal, *, json_out: bool) -> dict[str, Any]:
    """Send `req` and render the answer; returns the final Response (also on `response.failed`)."""
    if not req.stream:
        with term.waiting("waiting for the model…"):
            response: dict[str, Any] = dict(await create_response(ctx, req))
        _remember(ctx, response)
        if json_out:
            term.json(response)
            return response
        for item in response["output"]:
            if item["type"] == "reasoning" and item.get("content"):
                term.reasoning(item["content"][0]["text"])
                term.end_err_line()
        if response["output_text"]:
            term.markdown(response["output_text"])
        _show_calls(term, response["output"])
        term.usage(response["model"], _usage(response.get("usage")))
        return response
    printer = None if json_out else AnswerPrinter(term)
    final: dict[str, Any] = {}
    stream = None
    try:
        stream = await open_response_stream(ctx, req)
        async with stream:
            async for event in stream:
                if json_out:
                    term.json(event, compact=True)
                elif printer is not None and event["type"] == "response.reasoning_text.delta":
                    printer.reasoning(event["delta"])
                elif printer is not None and event["type"] == "response.output_text.delta":
                    printer.text(event["delta"])
                if "response" in event:
                    final = dict(event["response"])
    finally:
        if printer is not None:
            printer.close()
    if stream is not None and stream.error is not None:
        # The events (with `response.failed`) are out; the command still fails with that error's exit status.
        raise stream.error
    _remember(ctx, final)
    if printer is not None:
        _show_calls(term, final.get("output", []))
        term.usage(final.get("model", req.model or ""), _usage(final.get("usage")))
    return final


def build_responses_body(*, base: dict[str, Any] | None, user_text: str | None, model: str | None,
                         system: str | None, temperature: float | None, max_tokens: int | None, no_stream: bool,
                         previous: str | None, default_model: str) -> dict[str, Any]:
    """A Responses request body from flags, or a --request Responses body with the flags laid over it."""
    body: dict[str, Any] = {"stream": not no_stream} if base is None else dict(base)
    body.setdefault("model", default_model)
    if model:
        body["model"] = model
    if no_stream:
        body["stream"] = False
    if user_text is not None:
        body["input"] = user_text
    if system is not None:
        body["instructions"] = system
    if temperature is not None:
        body["temperature"] = temperature
    if max_tokens is not None:
        body["max_output_tokens"] = max_tokens
    if previous is not None:
        body["previous_response_id"] = previous
    return body


def responses_session(settings: Settings, template: dict[str, Any], term: Terminal, *, json_out: bool) -> None:
    """The interactive chat over stored responses: each turn continues the previous one by its id."""
    import asyncio
    import contextlib
    from contextlib import AsyncExitStack

    from cfai_cli.cli.answer import Reply
    from cfai_cli.cli.interactive import HELP, run_session
    from cfai_cli.service.context import open_context

    with contextlib.suppress(ImportError):  # not on Windows; input() then works without line editing
        import readline  # noqa: F401  (imported for its side effect: line editing and history in input())

    state: dict[str, Any] = {"previous": template.get("previous_response_id"), "turns": 0}
    with asyncio.Runner() as runner:
        stack = AsyncExitStack()
        ctx = runner.run(stack.enter_async_context(open_context(settings)))
        try:
            async def answer(messages: list[dict[str, Any]]) -> Reply:
                if len(messages) == 1 and state["turns"]:
                    state["previous"] = None  # /reset: the session's history is gone, so is the chain
                body = {**template, "input": messages[-1]["content"], "previous_response_id": state["previous"]}
                response = await respond(ctx, build_request(body, None), term, json_out=json_out)
                state["turns"] += 1
                if response.get("status") != "failed" and response.get("store"):
                    state["previous"] = response["id"]
                return Reply(content=response.get("output_text", ""))

            term.note(f"Chatting with {template['model']} over the Responses API. {HELP}")
            run_session(read=lambda: term.prompt("› "), answer=answer, runner=runner, term=term)
        finally:
            runner.run(stack.aclose())
