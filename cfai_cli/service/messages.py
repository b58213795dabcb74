"""The Anthropic Messages API for the proxy, on the chat service: one `message`, its SSE events, token counts.

Imports core, errors, upstream (the Anthropic client), service.chat, service.chat_stream and service.tokens.
A Messages request becomes a chat request (core.translate.anthropic_in), runs through the same router,
policies and usage record as a chat completion, and its answer (or chunk stream) is translated back; a target
on an Anthropic upstream is given the client's own body instead (only the model renamed), and its answer or
events are passed on untranslated. As with chat, everything that can fail early
(validation, the model, opening the upstream stream) happens before the stream is returned, so the proxy can
still answer a real HTTP error; a failure after that is an in-band `error` event (`MessageEvents.fail`).
`max_tokens` is honoured, but fitted into the model's context window where the catalogue knows it: Claude Code
asks for 128,000 output tokens on every turn, and vLLM-served Workers AI models refuse a request whose prompt
plus `max_tokens` exceeds their context (reference §1.4, "context overflow") instead of stopping early.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from cfai_cli.core.anthropic.models import CountTokensRequest, MessagesRequest
from cfai_cli.core.caps import check_stream_share
from cfai_cli.core.catalog import CONTEXT_WINDOWS
from cfai_cli.core.openai.chat import ChatCompletionRequest
from cfai_cli.core.routing import Target
from cfai_cli.core.tokens import estimate_tokens
from cfai_cli.core.translate.anthropic_in import (
    AnthropicPlan,
    MessageStream,
    count_input_tokens,
    to_chat_request,
    to_message,
)
from cfai_cli.errors import CfaiError
from cfai_cli.service.chat import (
    completion_attempt,
    create_chat_completion,
    note_usage,
    open_chat_stream,
    stream_attempt,
)
from cfai_cli.service.chat_stream import ChatStream, EventStream, Source, prime
from cfai_cli.service.context import Context
from cfai_cli.service.cost import plan_chat
from cfai_cli.service.gather import Closable
from cfai_cli.service.models import CACHE_SECONDS, catalogue
from cfai_cli.service.tokens import bundled_tokenizer
from cfai_cli.upstream.anthropic import AnthropicClient
from cfai_cli.upstream.provider import Provider

Event = dict[str, Any]


# Room kept free beyond the estimated prompt when fitting max_tokens: the estimate (or a tokenizer of another
# family) can fall short of the model's own count, and the chat template adds tokens of its own.
PROMPT_MARGIN = 0.15
MIN_ROOM = 256
_NO_CATALOGUE = "messages:catalogue-failed"


@dataclass(frozen=True)
class Prepared:
    """A Messages request ready to run: its plan (the chat request, dropped server tools, stop sequences), its
    input-token estimate (message_start needs one before Workers AI reports any), and the body as the client
    sent it (what an Anthropic upstream is given, untranslated)."""

    plan: AnthropicPlan
    input_tokens: int
    body: Mapping[str, Any]

    @property
    def dropped_tools(self) -> list[str]:
        return self.plan.dropped_tools


async def prepare_message(ctx: Context, req: MessagesRequest, body: Mapping[str, Any], *, stream: bool) -> Prepared:
    """The chat request a Messages request runs as, its max_tokens fitted to the models it may run on."""
    plan = to_chat_request(req, stream=stream)
    _, chain = ctx.router.chain(req.model, vision=plan.chat.has_images())
    models = [target.model for target in chain]
    estimate = await _count(req, models[0])
    room = await _output_room(ctx, models, estimate)
    asked = plan.chat.max_tokens or req.max_tokens
    if room is not None and asked > room:
        plan = replace(plan, chat=plan.chat.model_copy(update={"max_tokens": room}))
    return Prepared(plan, estimate, body)


async def _output_room(ctx: Context, models: list[str], prompt_tokens: int) -> int | None:
    """The most output tokens every model of the chain has room for after the prompt, or None when neither the
    live catalogue nor core.catalog.CONTEXT_WINDOWS knows any of their context windows (another provider's
    model: then max_tokens goes as asked)."""
    live: dict[str, int | None] = {}
    failed = ctx.cache.get(_NO_CATALOGUE)
    if failed is None or ctx.clock() - failed >= CACHE_SECONDS:  # not asked again on every request while it fails
        try:
            live = {m.id: m.context_window for m in await catalogue(ctx)}
        except CfaiError:
            ctx.cache[_NO_CATALOGUE] = ctx.clock()
    windows = [w for w in (_window(model, live) for model in models) if w]
    if not windows:
        return None
    return max(MIN_ROOM, min(windows) - int(prompt_tokens * (1 + PROMPT_MARGIN)) - MIN_ROOM)


def _window(model: str, live: dict[str, int | None]) -> int | None:
    """The context window that holds for `model`: the smaller of the live catalogue's and the known one."""
    found = [w for w in (live.get(model), CONTEXT_WINDOWS.get(model)) if w]
    return min(found) if found else None


def _passed_body(prepared: Prepared, model: str, *, stream: bool) -> dict[str, Any]:
    """The client's own body for an Anthropic upstream: only the model name changes."""
    body = {**prepared.body, "model": model}
    if stream:
        body["stream"] = True
    else:
        body.pop("stream", None)
    return body


def _note_message_usage(ctx: Context, usage: object) -> None:
    """An Anthropic usage object into the request's record (cache reads and writes are input tokens too)."""
    if isinstance(usage, Mapping):
        def tokens(name: str) -> int:
            value = usage.get(name)
            return value if isinstance(value, int) else 0

        note_usage(ctx, {"prompt_tokens": tokens("input_tokens") + tokens("cache_read_input_tokens")
                         + tokens("cache_creation_input_tokens"), "completion_tokens": tokens("output_tokens")})


def _may_pass_through(ctx: Context, chat: ChatCompletionRequest) -> bool:
    """Whether `chat`'s chain has a target on an Anthropic upstream (else it is the chat path, cache and all)."""
    return "anthropic" in ctx.router.kinds(chat.model, vision=chat.has_images())


async def create_message(ctx: Context, prepared: Prepared) -> dict[str, Any]:
    """POST /v1/messages without `stream`: the chat answer as an Anthropic `message` (stop sequences applied),
    or, from an Anthropic upstream, its own message (the request passed through untranslated)."""
    chat = prepared.plan.chat
    if not _may_pass_through(ctx, chat):
        return to_message(await create_chat_completion(ctx, chat), prepared.plan, message_id=ctx.ids("msg"))
    translated = completion_attempt(ctx, chat)

    async def attempt(target: Target, provider: Provider) -> dict[str, Any]:
        if isinstance(provider, AnthropicClient):
            message = await provider.messages(_passed_body(prepared, target.model, stream=False))
            _note_message_usage(ctx, message.get("usage"))
            return message
        return to_message(await translated(target, provider), prepared.plan, message_id=ctx.ids("msg"))

    ctx.record.asked = chat.model
    plan_chat(ctx.record, chat)
    return await ctx.router.call(chat.model, attempt, vision=chat.has_images(), caller=ctx.record)


class AnthropicEvents(EventStream[Event]):
    """The SSE events of one streamed message; `fail()` gives the in-band `error` event when the stream breaks
    once it has started (none after the stream has ended)."""

    def __init__(self, ctx: Context, events: AsyncGenerator[list[Event], None], *, owns: Closable) -> None:
        self._ctx = ctx
        self._ended = False
        super().__init__(events, owns=(owns,))

    def fail(self, error: CfaiError) -> list[Event]:
        if self._ended:
            return []
        self._ended = True
        # A mid-stream error comes from past the router, which masks the ones it sees: mask it here too.
        error.message = self._ctx.router.scrubber.text(error.message)
        return self._error_events(error)

    def _error_events(self, error: CfaiError) -> list[Event]:
        return [error.to_anthropic()]


class MessageEvents(AnthropicEvents):
    """A chat stream's events translated, a batch per batch of the chat stream under it. Reading stops, and
    the chat stream is closed, as soon as a stop sequence is hit: nothing after it is generated for nothing."""

    def __init__(self, ctx: Context, translator: MessageStream, chat: ChatStream) -> None:
        self.translator = translator
        super().__init__(ctx, self._events(chat), owns=chat)

    def _error_events(self, error: CfaiError) -> list[Event]:
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


class PassedEvents(AnthropicEvents):
    """An Anthropic upstream's own SSE events, passed on as they come (usage noted in the request's record)."""

    def __init__(self, ctx: Context, batches: Source[list[tuple[str, Event]]]) -> None:
        self._output = 0  # output tokens noted so far
        super().__init__(ctx, self._events(batches), owns=batches)

    async def _events(self, batches: Source[list[tuple[str, Event]]]
                      ) -> AsyncGenerator[list[Event], None]:
        async for batch in batches:
            for _, data in batch:
                # message_start holds the input count; message_delta the output count so far (a total, not a
                # step: the last one holds), so output is taken from message_delta alone.
                if data.get("type") == "message_start" and isinstance(data.get("message"), Mapping):
                    usage = data["message"].get("usage")
                    if isinstance(usage, Mapping):
                        _note_message_usage(self._ctx, {k: v for k, v in usage.items() if k != "output_tokens"})
                elif data.get("type") == "message_delta" and isinstance(data.get("usage"), Mapping):
                    output = data["usage"].get("output_tokens")
                    if isinstance(output, int):
                        _note_message_usage(self._ctx, {"output_tokens": output - self._output})
                        self._output = output
            yield [data for _, data in batch]
        self._ended = True


async def open_message_stream(ctx: Context, prepared: Prepared) -> AnthropicEvents:
    """Open the upstream stream (failing over before the first byte, as chat does) and return its events:
    a chat stream translated (MessageEvents), or an Anthropic upstream's own events (PassedEvents)."""
    chat = prepared.plan.chat

    def translate(stream: ChatStream) -> MessageEvents:
        translator = MessageStream(prepared.plan, message_id=ctx.ids("msg"),
                                   input_tokens_estimate=prepared.input_tokens)
        return MessageEvents(ctx, translator, stream)

    if not _may_pass_through(ctx, chat):
        return translate(await open_chat_stream(ctx, chat))
    translated = stream_attempt(ctx, chat)

    async def attempt(target: Target, provider: Provider) -> AnthropicEvents:
        if isinstance(provider, AnthropicClient):
            body = _passed_body(prepared, target.model, stream=True)
            return PassedEvents(ctx, await prime(await provider.messages_stream(body), ctx.record))
        return translate(await translated(target, provider))

    check_stream_share(1, ctx.settings.max_connections)
    ctx.record.asked = chat.model
    plan_chat(ctx.record, chat)
    return await ctx.router.call(chat.model, attempt, vision=chat.has_images(), caller=ctx.record)


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
    ctx.router.authorize(req.model, ctx.record)  # counting runs no model, but judged as /v1/messages would be
    return {"input_tokens": await _count(req, model_id)}
