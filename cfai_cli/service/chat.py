"""Chat completions for both front ends: one answer, or a stream of chunks, from Workers AI.

Imports core, upstream (through Context), errors. `open_chat_stream` does all that can fail early
(model, images, opening the upstream stream) before returning, so the proxy can still answer a clean
HTTP error; failures after that surface from the stream and become in-band stream errors. Every stream is a
`ChatStream` (service.chat_stream); the chunks of a Workers AI stream are made in service.workers_stream.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, TypeVar

from cfai_cli.core.affinity import session_affinity
from cfai_cli.core.caps import ByteBudget, check_image_parts, check_stream_share
from cfai_cli.core.catalog import streams_upstream
from cfai_cli.core.openai.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ImagePart, ImageURL
from cfai_cli.core.openai.passthrough import openai_fields
from cfai_cli.core.routing import Target
from cfai_cli.core.translate.chat import WorkersChatCall, schema_fallback, to_workers_chat
from cfai_cli.core.translate.chat_answer import from_workers_chat
from cfai_cli.core.translate.chat_stream import completion_to_chunks
from cfai_cli.core.workers.chat import parse_chat_result
from cfai_cli.errors import InvalidRequest
from cfai_cli.service import cache
from cfai_cli.service.accounts import on_workers
from cfai_cli.service.chat_stream import ChatStream, Source, prime
from cfai_cli.service.context import Context
from cfai_cli.service.cost import plan_chat
from cfai_cli.service.gather import gather_all, open_all
from cfai_cli.service.workers_stream import workers_stream
from cfai_cli.upstream.provider import ChatUpstream, Provider
from cfai_cli.upstream.workers import WorkersAIClient

T = TypeVar("T")


async def _inline_images(ctx: Context, req: ChatCompletionRequest) -> ChatCompletionRequest:
    """Replace http(s) image URLs with data URIs: Workers AI models only take inline images."""
    parts = [
        (i, j, part)
        for i, message in enumerate(req.messages)
        if isinstance(message.content, list)
        for j, part in enumerate(message.content)
        if isinstance(part, ImagePart)
    ]
    check_image_parts(len(parts))
    found = [(i, j, part) for i, j, part in parts if not part.url().startswith("data:")]
    if not found:
        return req
    req = req.model_copy(deep=True)
    budget = ByteBudget()  # one allowance for all of this request's fetches
    uris = await gather_all(
        ctx.images.data_uri(part.url(), param=f"messages[{i}].content[{j}].image_url.url", budget=budget)
        for i, j, part in found
    )
    for (i, j, _), uri in zip(found, uris, strict=True):
        content = req.messages[i].content
        assert isinstance(content, list)
        part = content[j]
        assert isinstance(part, ImagePart)
        part.image_url = ImageURL(url=uri)
    return req


def _images_once(ctx: Context, req: ChatCompletionRequest) -> Callable[[], Awaitable[ChatCompletionRequest]]:
    """The request with its images inlined, fetched on first need and reused by every later target."""
    done: list[ChatCompletionRequest] = []

    async def get() -> ChatCompletionRequest:
        if not done:
            done.append(await _inline_images(ctx, req))
        return done[0]

    return get


def _passthrough_body(ctx: Context, req: ChatCompletionRequest, target: Target, *, stream: bool) -> dict[str, Any]:
    """What the client sent, for an OpenAI-compatible upstream: the model name changes, and only the OpenAI
    schema's fields (and the upstream's configured `extra_fields`) go on (core.openai.passthrough)."""
    upstream = ctx.settings.routing.upstream(target.upstream)
    body = openai_fields(req.model_dump(mode="json", by_alias=True, exclude_unset=True),
                         upstream.extra_fields if upstream is not None else ())
    body["model"] = target.model
    if stream:
        body["stream"] = True
    else:
        body.pop("stream", None)
        body.pop("stream_options", None)
    return body


def _plan(ctx: Context, req: ChatCompletionRequest, model_id: str, *, stream: bool,
          affinity: str | None) -> WorkersChatCall:
    call = to_workers_chat(req, model_id, default_max_tokens=ctx.settings.default_max_tokens, stream=stream)
    call.affinity = affinity
    return call


def request_affinity(ctx: Context, req: ChatCompletionRequest, *, chain_affinity: str | None = None,
                     chain_root: str | None = None) -> str | None:
    """The request's x-session-affinity for Workers AI, salted with its key id (core.affinity)."""
    return session_affinity(req, tenant=ctx.record.key_id, explicit=ctx.record.affinity,
                            chain_affinity=chain_affinity, chain_root=chain_root)


async def _upstream(ctx: Context, call: WorkersChatCall, send: Callable[..., Awaitable[T]]) -> T:
    """Send `call` (with its affinity); if a native model's schema rejects `tool_choice` or OpenAI-style tool
    history, resend without it (core.translate.chat.schema_fallback)."""
    try:
        return await send(call.model_id, call.body, affinity=call.affinity)
    except InvalidRequest as exc:
        fallback = None if call.chat_dialect else schema_fallback(call.body, exc)
        if fallback is None:
            raise
        return await send(call.model_id, fallback, affinity=call.affinity)


async def _complete(ctx: Context, req: ChatCompletionRequest, model_id: str, client: WorkersAIClient,
                    affinity: str | None) -> ChatCompletion:
    call = _plan(ctx, req, model_id, stream=False, affinity=affinity)
    if (req.n or 1) == 1:  # one call, awaited in place: no task of its own (gather_all's task, gather and the
        results = [await _upstream(ctx, call, client.run)]  # extra turn of the loop: ~25 k instructions)
    else:
        results = await gather_all(_upstream(ctx, call, client.run) for _ in range(req.n or 1))
    parsed = [parse_chat_result(result) for result in results]
    if call.forced_tools:  # only then: its import and a coroutine for every answer, with core.translate.chat's
        # no-tools path and core.catalog's cache, were ~17 k instructions of a plain chat (1.002 -> 0.984 M, round 7)
        from cfai_cli.service.forced import ensure_forced_calls  # a whole answer only: not a stream's import

        parsed = await ensure_forced_calls(req, call, parsed, client)
    completion = from_workers_chat(req, call, parsed, completion_id=ctx.ids("chatcmpl"), created=ctx.now(),
                                   new_call_id=lambda: ctx.ids("call"))
    note_usage(ctx, completion.get("usage"))  # the forced-call retry's tokens are in it too
    return completion


def note_usage(ctx: Context, usage: object) -> None:
    """Tokens an answer used, into the request's record (limits and the usage log read them there)."""
    if isinstance(usage, dict):
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        ctx.record.add_usage(prompt if isinstance(prompt, int) else 0,
                             completion if isinstance(completion, int) else 0)


Attempt = Callable[[Target, Provider], Awaitable[T]]


async def create_chat_completion(ctx: Context, req: ChatCompletionRequest, *,
                                 affinity: str | None = None) -> ChatCompletion:
    """One answer from the response cache (when the request may use it and one is stored), else from the first
    target of the model's chain that gives one (see upstream.router), stored when the request may store it.

    `affinity`: the x-session-affinity a caller already chose (the Responses service); else `request_affinity`."""
    ctx.record.asked = req.model
    slot = await cache.chat_slot(ctx, req)
    if slot is not None and slot.entry is not None:
        return cache.chat_hit(ctx, slot)
    plan_chat(ctx.record, req)
    answer = await ctx.router.call(req.model, completion_attempt(ctx, req, affinity=affinity),
                                   vision=req.has_images(), caller=ctx.record, calls=req.n or 1)
    if slot is not None:
        await slot.store(answer)
    return answer


def completion_attempt(ctx: Context, req: ChatCompletionRequest, *,
                       affinity: str | None = None) -> Attempt[ChatCompletion]:
    """How one target answers `req` whole: for the router's walk (and for front ends that add targets of
    their own, as the Anthropic Messages API does with Anthropic upstreams)."""
    inlined = _images_once(ctx, req)
    affinity = affinity or request_affinity(ctx, req)

    async def attempt(target: Target, provider: Provider) -> ChatCompletion:
        if isinstance(provider, ChatUpstream):  # passed through as the client sent it
            answer = await provider.chat(_passthrough_body(ctx, req, target, stream=False))
            note_usage(ctx, answer.get("usage"))
            return answer  # type: ignore[return-value]  # the provider's own object, passed on as it is
        images_inlined = await inlined()
        return await on_workers(ctx, provider, target.model,
                                lambda client: _complete(ctx, images_inlined, target.model, client, affinity))

    return attempt


async def open_chat_stream(ctx: Context, req: ChatCompletionRequest, *,
                           affinity: str | None = None) -> ChatStream:
    """Open the upstream stream(s) of the first target that answers, and return the answer's stream.

    Failover happens here, before the first byte; a failure once chunks flow ends the stream with an error.
    A cached answer replays as a stream; a miss that may be stored is stored when it ends cleanly.
    """
    check_stream_share(req.n or 1, ctx.settings.max_connections)
    ctx.record.asked = req.model
    slot = await cache.chat_slot(ctx, req)
    if slot is None:
        return await _open_chat_stream(ctx, req, affinity)
    if slot.entry is not None:
        return ChatStream.replay(completion_to_chunks(cache.chat_hit(ctx, slot), include_usage=_wants_usage(req)))
    return cache.storing(slot, await _open_chat_stream(ctx, cache.with_usage(req), affinity),
                         show_usage=_wants_usage(req))


async def _open_chat_stream(ctx: Context, req: ChatCompletionRequest, affinity: str | None) -> ChatStream:
    plan_chat(ctx.record, req)
    return await ctx.router.call(req.model, stream_attempt(ctx, req, affinity=affinity), vision=req.has_images(),
                                 caller=ctx.record, calls=req.n or 1)


def stream_attempt(ctx: Context, req: ChatCompletionRequest, *,
                   affinity: str | None = None) -> Attempt[ChatStream]:
    """How one target opens `req`'s stream (see completion_attempt)."""
    inlined = _images_once(ctx, req)
    affinity = affinity or request_affinity(ctx, req)

    async def attempt(target: Target, provider: Provider) -> ChatStream:
        if isinstance(provider, ChatUpstream):  # passed through as the client sent it
            body = _passthrough_body(ctx, req, target, stream=True)
            body["stream_options"] = {**body.get("stream_options", {}), "include_usage": True}  # for the record
            batches = await prime(await provider.chat_stream(body), ctx.record)
            return ChatStream(_noting_usage(ctx, batches, show=_wants_usage(req)), owns=(batches,))
        images_inlined = await inlined()
        return await on_workers(ctx, provider, target.model,
                                lambda client: _open_workers_stream(ctx, images_inlined, target.model, client,
                                                                    affinity))

    return attempt


def _wants_usage(req: ChatCompletionRequest) -> bool:
    return bool(req.stream_options and req.stream_options.include_usage)


async def _noting_usage(ctx: Context, batches: Source[list[dict[str, Any]]], *, show: bool
                        ) -> AsyncGenerator[list[ChatCompletionChunk], None]:
    """A provider's chunks, its usage noted in the record; usage is shown only to a client that asked for it."""
    async with aclosing(batches):
        async for batch in batches:
            out: list[ChatCompletionChunk] = []
            for event in batch:
                if isinstance(event.get("usage"), dict):
                    note_usage(ctx, event["usage"])
                    if not show:
                        if not event.get("choices"):
                            continue  # the usage-only chunk the client did not ask for
                        event = {k: v for k, v in event.items() if k != "usage"}
                elif not show and "usage" in event:
                    event = {k: v for k, v in event.items() if k != "usage"}
                out.append(event)  # type: ignore[arg-type]  # the provider's own chunk, passed on as it is
            yield out


async def _open_workers_stream(ctx: Context, req: ChatCompletionRequest, model_id: str,
                               client: WorkersAIClient, affinity: str | None) -> ChatStream:
    include_usage = _wants_usage(req)
    call = _plan(ctx, req, model_id, stream=True, affinity=affinity)
    json_mode = req.response_format is not None and req.response_format.type != "text"
    if (not streams_upstream(model_id) or (not call.chat_dialect and (json_mode or call.forced_tools))
            or not call.tools.identity):
        # Answer whole, then replay as chunks: what cannot stream upstream (reference §2.4, §2.6), forced calls
        # on native models (recovered when answered in text: service.forced), and custom or namespaced tools
        # (their calls are mapped back whole).
        completion = await _complete(ctx, req, model_id, client, affinity)
        return ChatStream.replay(completion_to_chunks(completion, include_usage=include_usage))
    streams = await open_all(_upstream(ctx, call, client.stream) for _ in range(req.n or 1))
    return await workers_stream(ctx, req, call, streams, client, include_usage=include_usage)
