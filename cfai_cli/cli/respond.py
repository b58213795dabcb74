"""`cfai chat --responses`: answers through the Responses API service, rendered, and logged (cli.xlog).

Imports service, store, core and cli.render; only imported when such a chat runs. The same service
functions back `POST /v1/responses`, so the CLI exercises exactly the proxy's path. A logged conversation
(`-c`, `--cid`) continues by `previous_response_id` when its last exchange is a Response still stored, else
with its history as input items; the interactive variant (`ResponsesBackend`) chains its turns by
`previous_response_id` in cli.interactive's loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cfai_cli.cli.common import validate_body
from cfai_cli.cli.render import AnswerPrinter, Terminal
from cfai_cli.cli.session import Turn, TurnResult
from cfai_cli.cli.xlog import Conversation, log_exchange
from cfai_cli.core.history import responses_items
from cfai_cli.core.openai.responses import CreateResponseRequest
from cfai_cli.core.translate.responses_items import input_items, items_to_messages
from cfai_cli.errors import InvalidRequest
from cfai_cli.service.context import Context
from cfai_cli.service.record import RequestRecord
from cfai_cli.service.responses import create_response, open_response_stream
from cfai_cli.settings import Settings
from cfai_cli.store.responses import ResponseStore

if TYPE_CHECKING:
    from cfai_cli.cli.interactive import Thread


def continued(settings: Settings, body: dict[str, Any], conversation: Conversation | None) -> dict[str, Any]:
    """`body` continuing `conversation`: by `previous_response_id` when its last exchange is a Response still
    stored, else with its history as input items; its system prompt as `instructions` unless the body has its
    own (a stored chain keeps its inputs and outputs, never the instructions)."""
    if conversation is None:
        return body
    out = dict(body)
    if out.get("instructions") is None and conversation.system is not None:
        out["instructions"] = conversation.system
    if out.get("previous_response_id") is not None:  # a --request body's own chain wins
        return out
    store = ResponseStore(settings.storage) if conversation.response_id is not None else None
    stored = store is not None and store.db.exists() and store.get(conversation.response_id or "") is not None
    if stored:
        out["previous_response_id"] = conversation.response_id
    else:
        given = out.get("input")
        own = [{"role": "user", "content": given}] if isinstance(given, str) else list(given or [])
        out["input"] = [*responses_items(conversation.messages), *own]
    return out


def added_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """What a Responses body (without the history) sends, as chat messages: its instructions, then its input."""
    try:
        messages = items_to_messages(input_items(body.get("input"), lambda prefix: prefix))
    except InvalidRequest:  # it was answered, so this is only a shape the log cannot read: keep the text
        messages = [{"role": "user", "content": str(body.get("input") or "")}]
    instructions = body.get("instructions")
    return [{"role": "system", "content": instructions}, *messages] if instructions else messages


def log_response(settings: Settings, term: Terminal, ctx: Context, *, cid: str, body: dict[str, Any],
                 response: dict[str, Any], started: float, attachments: list[dict[str, Any]]) -> None:
    """Log one Responses exchange (`body`: the request without the history); a failed one is not logged."""
    if not response or response.get("status") == "failed":
        return
    calls = [{"name": i["name"], "arguments": i["arguments"]} for i in response.get("output", [])
             if i.get("type") == "function_call"]
    log_exchange(settings, term, ctx, cid=cid, api="responses", asked=str(body.get("model")),
                 added=added_messages(body), answer=response.get("output_text") or "", tool_calls=calls,
                 started=started, attachments=attachments,
                 response_id=response.get("id") if response.get("store") else None)


def build_request(body: dict[str, Any], from_file: str | None) -> CreateResponseRequest:
    return validate_body(CreateResponseRequest, body, from_file)


def _usage(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """Responses usage in the chat terms Terminal.usage prints."""
    if not usage:
        return None
    return {"prompt_tokens": usage.get("input_tokens", 0), "completion_tokens": usage.get("output_tokens", 0)}


def _show_calls(term: Terminal, output: list[dict[str, Any]]) -> None:
    for item in output:
        if item["type"] == "function_call":
            term.tool_call(item["name"], item["arguments"])


async def respond(ctx: Context, req: CreateResponseRequest, term: Terminal, *, json_out: bool) -> dict[str, Any]:
    """Send `req` and render the answer; returns the final Response (also on `response.failed`)."""
    if not req.stream:
        with term.waiting("waiting for the model…"):
            response: dict[str, Any] = dict(await create_response(ctx, req))
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
    """Each turn is one stored response continuing the previous one by its id (the first continues the logged
    conversation `thread` names, if any); /clear starts a new chain. Every answered turn is logged."""

    def __init__(self, ctx: Context, template: dict[str, Any], term: Terminal, *, json_out: bool,
                 thread: Thread) -> None:
        self.ctx, self.template, self.term, self.json_out, self.thread = ctx, template, term, json_out, thread
        self.previous: str | None = template.get("previous_response_id")
        self.epoch = 0

    async def answer(self, turn: Turn) -> TurnResult:
        import time

        from cfai_cli.cli.answer import Reply
        from cfai_cli.cli.attach import add_to_responses_body, content_parts, user_content, vision_model
        from cfai_cli.cli.interactive import spend_of
        from cfai_cli.cli.xlog import attachment_notes

        if turn.epoch != self.epoch:
            self.previous, self.epoch = None, turn.epoch
        self.thread.follow(turn.epoch)
        ctx = self.ctx.for_request(RequestRecord())
        texts, images = await content_parts(ctx, turn.attachments, self.term) if turn.attachments else ([], [])
        model = vision_model(ctx.settings, turn.model, self.term, chosen=turn.chosen) if images else turn.model
        own = {**self.template, "model": model, "input": turn.text, "previous_response_id": self.previous}
        own.pop("instructions", None)
        if turn.system:
            own["instructions"] = turn.system
        if turn.attachments:
            add_to_responses_body(own, texts, images)
        started = time.time()
        body = continued(ctx.settings, own, self.thread.conversation)
        response = await respond(ctx, build_request(body, None), self.term, json_out=self.json_out)
        if response.get("status") != "failed" and response.get("store"):
            self.previous = response["id"]
        log_response(ctx.settings, self.term, ctx, cid=self.thread.cid, body={**own, "previous_response_id": None},
                     response=response, started=started, attachments=attachment_notes(turn.attachments))
        user = {"role": "user", "content": user_content(turn.text, texts, images)}
        return TurnResult(user=user, reply=Reply(content=response.get("output_text", "")), model=model,
                          spend=spend_of(ctx.record, ctx))


def responses_session(settings: Settings, template: dict[str, Any], term: Terminal, *, json_out: bool,
                      conversation: Conversation | None = None) -> None:
    """The interactive chat over stored responses: the same loop and commands as chat completions; the first
    turn continues `conversation` (-c, --cid) if given."""
    from cfai_cli.cli.interactive import Thread, run_interactive

    thread = Thread.of(conversation)
    system = template.get("instructions") or (conversation.system if conversation else None)
    run_interactive(settings, template, term, system=system,
                    banner=f"Chatting with {template['model']} over the Responses API.",
                    backend=lambda ctx: ResponsesBackend(ctx, template, term, json_out=json_out, thread=thread))
