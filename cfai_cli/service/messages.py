"""The Anthropic Messages API for the proxy, on the chat service: one `message`, its SSE events, token counts.

Imports core, errors, service.chat, service.chat_stream and service.tokens. A Messages request becomes a chat
request (core.translate.anthropic_in), runs through the same router, policies and usage record as a chat
completion, and its answer (or chunk stream) is translated back. As with chat, everything that can fail early
(validation, the model, opening the upstream stream) happens before the stream is returned, so the proxy can
still answer a real HTTP error; a failure after that is an in-band `error` event (`MessageEvents.fail`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from cfai_cli.core.anthropic.models import CountTokensRequest, MessagesRequest
from cfai_cli.core.tokens import estimate_tokens
from cfai_cli.core.translate.anthropic_in import (
    AnthropicPlan,
    MessageStream,
    count_input_tokens,
    to_chat_request,
    to_message,
)
from cfai_cli.errors import CfaiError
from cfai_cli.service.chat import create_chat_completion, open_chat_stream
from cfai_cli.service.chat_stream import ChatStream, EventStream
from cfai_cli.service.context import Context
from cfai_cli.service.tokens import bundled_tokenizer

Event = dict[str, Any]


def plan_message(req: MessagesRequest, *, stream: bool) -> AnthropicPlan:
    """The chat request a Messages request runs as (the route reads its dropped server tools)."""
    return to_chat_request(req, stream=stream)


async def create_message(ctx: Context, plan: AnthropicPlan) -> dict[str, Any]:
    """POST /v1/messages without `stream`: the chat answer as an Anthropic `message` (stop sequences applied)."""
    completion = await create_chat_completion(ctx, plan.chat)
    return to_message(completion, plan, message_id=ctx.ids("msg"))


class MessageEvents(EventStream[Event]):
    """The SSE events of one streamed message, a batch per batch of the chat stream under it. Reading stops,
    and the chat stream is closed, as soon as a stop sequence is hit: nothing after it is generated for
    nothing. `fail()` gives the in-band error event when the stream breaks once it has started."""

    def __init__(self, ctx: Context, translator: MessageStream, chat: ChatStream) -> None:
        self._ctx = ctx
        self.translator = translator
        self._ended = False
        super().__init__(self._events(chat), owns=(chat,))

    def fail(self, error: CfaiError) -> list[Event]:
        if self._ended:
            return []
        self._ended = True
        # A mid-stream error comes from past the router, which masks the ones it sees: mask it here too.
        error.message = self._ctx.router.scrubber.text(error.message)
        return self.translator.error(error)

    async def _events(self, chat: ChatStream) -> AsyncGenerator[list[Event], None]:
        translator = self.translator
        reported = False  # Workers AI's usage comes last: a stream cut at a stop sequence never sees it
        written = 0  # characters sent, for the estimate then
        async with chat:
            yield translator.start()
            async for batch in chat.batches():
                events: list[Event] = []
                for chunk in batch:
                    reported = reported or bool(chunk.get("usage"))
                    events += translator.feed(chunk)
                    if translator.done:
                        break
                written += sum(len(_delta_text(event)) for event in events)
                yield events
                if translator.done:
                    break  # leaving `async with` closes the upstream stream now
        self._ended = True
        estimate = None if reported else {"prompt_tokens": translator.input_tokens_estimate,
                                          "completion_tokens": estimate_tokens("x" * written)}
        yield translator.finish(estimate)


def _delta_text(event: Event) -> str:
    delta = event.get("delta") if event.get("type") == "content_block_delta" else None
    if not isinstance(delta, dict):
        return ""
    return str(delta.get("text") or delta.get("partial_json") or delta.get("thinking") or "")


async def open_message_stream(ctx: Context, req: MessagesRequest, plan: AnthropicPlan) -> MessageEvents:
    """Open the upstream stream (failing over before the first byte, as chat does) and return its events."""
    model_id = ctx.router.resolve(req.model, vision=plan.chat.has_images())
    # message_start needs input_tokens before Workers AI reports any: the estimate count_tokens gives.
    estimate = await _count(req, model_id)
    chat = await open_chat_stream(ctx, plan.chat)
    translator = MessageStream(plan, message_id=ctx.ids("msg"), input_tokens_estimate=estimate)
    return MessageEvents(ctx, translator, chat)


async def _count(req: CountTokensRequest, model_id: str) -> int:
    """Input tokens as /v1/tokenize counts them: exact with a bundled tokenizer, else the estimate; in a
    thread, since a Claude Code request carries tens of kilobytes of system prompt and tools."""
    tokenizer = bundled_tokenizer(model_id)
    count = tokenizer.count if tokenizer is not None else estimate_tokens
    return await asyncio.to_thread(count_input_tokens, req, model_id, count=count)


async def count_message_tokens(ctx: Context, req: CountTokensRequest) -> dict[str, Any]:
    """POST /v1/messages/count_tokens: `{"input_tokens": N}` for the model the request would run on."""
    _, chain = ctx.router.chain(req.model)  # a route counts with its first target's model, as /v1/tokenize
    model_id = chain[0].model
    ctx.record.asked = req.model
    ctx.record.check_model(req.model, model_id)  # counting runs no model, but a key sees only its own
    return {"input_tokens": await _count(req, model_id)}
