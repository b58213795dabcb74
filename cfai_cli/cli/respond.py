"""`cfai chat --responses` / `--continue`: answers through the Responses API service, rendered.

Imports service, store, core and cli.render; only imported when such a chat runs. The same service
functions back `POST /v1/responses`, so the CLI exercises exactly the proxy's path. Each stored answer's
id is remembered in the data directory so `cfai chat -c` continues the last conversation; the
interactive variant (`ResponsesBackend`) chains its turns by `previous_response_id` in cli.interactive's loop.
"""

from __future__ import annotations

from typing import Any

from cfai_cli.cli.common import validate_body
from cfai_cli.cli.render import AnswerPrinter, Terminal
from cfai_cli.cli.session import Turn, TurnResult
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


class ResponsesBackend:
    """Each turn is one stored response continuing the previous one by its id; /clear starts a new chain."""

    def __init__(self, ctx: Context, template: dict[str, Any], term: Terminal, *, json_out: bool) -> None:
        self.ctx, self.template, self.term, self.json_out = ctx, template, term, json_out
        self.previous: str | None = template.get("previous_response_id")  # set by -c
        self.epoch = 0

    async def answer(self, turn: Turn) -> TurnResult:
        from cfai_cli.cli.answer import Reply
        from cfai_cli.cli.attach import add_to_responses_body, content_parts, user_content, vision_model
        from cfai_cli.cli.interactive import spend_of
        from cfai_cli.service.record import RequestRecord

        if turn.epoch != self.epoch:
            self.previous, self.epoch = None, turn.epoch
        ctx = self.ctx.for_request(RequestRecord())
        texts, images = await content_parts(ctx, turn.attachments, self.term) if turn.attachments else ([], [])
        model = vision_model(ctx.settings, turn.model, self.term, chosen=turn.chosen) if images else turn.model
        body = {**self.template, "model": model, "input": turn.text, "previous_response_id": self.previous}
        body.pop("instructions", None)
        if turn.system:
            body["instructions"] = turn.system
        if turn.attachments:
            add_to_responses_body(body, texts, images)
        response = await respond(ctx, build_request(body, None), self.term, json_out=self.json_out)
        if response.get("status") != "failed" and response.get("store"):
            self.previous = response["id"]
        user = {"role": "user", "content": user_content(turn.text, texts, images)}
        return TurnResult(user=user, reply=Reply(content=response.get("output_text", "")), model=model,
                          spend=spend_of(ctx.record, ctx))


def responses_session(settings: Settings, template: dict[str, Any], term: Terminal, *, json_out: bool) -> None:
    """The interactive chat over stored responses: the same loop and commands as chat completions."""
    from cfai_cli.cli.interactive import run_interactive

    run_interactive(settings, template, term, system=template.get("instructions"),
                    banner=f"Chatting with {template['model']} over the Responses API.",
                    backend=lambda ctx: ResponsesBackend(ctx, template, term, json_out=json_out))
