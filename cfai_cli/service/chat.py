"""Chat completions for both front ends: one answer, or a stream of chunks, from Workers AI.

Imports core, upstream (through Context), errors. `open_chat_stream` does all that can fail early
(model, images, opening the upstream stream) before returning, so the proxy can still answer a clean
HTTP error; failures after that surface from the iterator and become in-band stream errors.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import aclosing
from typing import Any, TypeVar, cast

from cfai_cli.core import jsonfast
from cfai_cli.core.caps import ByteBudget, check_image_parts, check_stream_share
from cfai_cli.core.catalog import streams_upstream
from cfai_cli.core.openai.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    ImagePart,
    ImageURL,
)
from cfai_cli.core.openai.passthrough import openai_fields
from cfai_cli.core.routing import Target
from cfai_cli.core.sse import SSEDecoder
from cfai_cli.core.translate.chat import WorkersChatCall, schema_fallback, to_workers_chat
from cfai_cli.core.translate.chat_answer import estimate_tokens, from_workers_chat, prompt_text, sum_usage, usage_out
from cfai_cli.core.translate.chat_stream import ChoiceStream, chunk, completion_to_chunks, is_error_event
from cfai_cli.core.workers.chat import ParsedUsage, parse_chat_result
from cfai_cli.errors import InvalidRequest, UpstreamError, UpstreamStreamError
from cfai_cli.service.context import Context
from cfai_cli.service.forced import ensure_forced_calls
from cfai_cli.upstream.router import Lane
from cfai_cli.upstream.workers import UpstreamStream, Waited, WorkersAIClient

T = TypeVar("T")


async def gather_all(aws: Iterable[Awaitable[T]]) -> list[T]:
    """Run concurrently; on the first failure cancel the rest and raise that failure itself."""
    # Even for the usual single call, a task of its own: awaiting it in place was measured 12% slower at
    # c=32 (bench/run.py, alternating A/B runs), though it skips ~8 µs of task and gather.
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


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


def _plan(ctx: Context, req: ChatCompletionRequest, model_id: str, *, stream: bool) -> WorkersChatCall:
    return to_workers_chat(req, model_id, default_max_tokens=ctx.settings.default_max_tokens, stream=stream)


async def _upstream(ctx: Context, call: WorkersChatCall, send: Callable[[str, dict[str, Any]], Awaitable[T]]) -> T:
    """Send `call`; if a native model's schema rejects `tool_choice` or OpenAI-style tool history, resend without
    it (core.translate.chat.schema_fallback)."""
    try:
        return await send(call.model_id, call.body)
    except InvalidRequest as exc:
        fallback = None if call.chat_dialect else schema_fallback(call.body, exc)
        if fallback is None:
            raise
        return await send(call.model_id, fallback)


async def _complete(ctx: Context, req: ChatCompletionRequest, model_id: str, client: WorkersAIClient) -> ChatCompletion:
    call = _plan(ctx, req, model_id, stream=False)
    results = await gather_all(_upstream(ctx, call, client.run) for _ in range(req.n or 1))
    parsed = await ensure_forced_calls(req, call, [parse_chat_result(result) for result in results], client)
    completion = from_workers_chat(req, call, parsed, completion_id=ctx.ids("chatcmpl"), created=ctx.now(),
                                   new_call_id=lambda: ctx.ids("call"))
    _note_usage(ctx, completion.get("usage"))  # the forced-call retry's tokens are in it too
    return completion


def _note_usage(ctx: Context, usage: object) -> None:
    """Tokens an answer used, into the request's record (limits and the usage log read them there)."""
    if isinstance(usage, dict):
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        ctx.record.add_usage(prompt if isinstance(prompt, int) else 0,
                             completion if isinstance(completion, int) else 0)


async def create_chat_completion(ctx: Context, req: ChatCompletionRequest) -> ChatCompletion:
    """One answer from the first target of the model's chain that gives one (see upstream.router)."""
    inlined = _images_once(ctx, req)

    async def attempt(target: Target, lane: Lane) -> ChatCompletion:
        if lane.kind == "openai":
            body = _passthrough_body(ctx, req, target, stream=False)
            answer = cast(ChatCompletion, await lane.openai.post_json("/chat/completions", body))
            _note_usage(ctx, answer.get("usage") if isinstance(answer, dict) else None)
            return answer
        return await _complete(ctx, await inlined(), target.model, lane.workers)

    ctx.record.asked = req.model
    return await ctx.router.call(req.model, attempt, vision=req.has_images(), caller=ctx.record, calls=req.n or 1)


async def _replay(chunks: list[ChatCompletionChunk]) -> AsyncIterator[ChatCompletionChunk]:
    for item in chunks:
        yield item


async def open_chat_stream(ctx: Context, req: ChatCompletionRequest) -> AsyncIterator[ChatCompletionChunk]:
    """Open the upstream stream(s) of the first target that answers, and return the chunk iterator.

    Failover happens here, before the first byte; a failure once chunks flow ends the stream with an error.
    """
    check_stream_share(req.n or 1, ctx.settings.max_connections)
    inlined = _images_once(ctx, req)

    async def attempt(target: Target, lane: Lane) -> AsyncIterator[ChatCompletionChunk]:
        if lane.kind == "openai":
            body = _passthrough_body(ctx, req, target, stream=True)
            body["stream_options"] = {**body.get("stream_options", {}), "include_usage": True}  # for the record
            events = await lane.openai.stream("/chat/completions", body)
            return cast(AsyncIterator[ChatCompletionChunk], _noting_usage(ctx, await _primed(events),
                                                                          show=_wants_usage(req)))
        return await _open_workers_stream(ctx, await inlined(), target.model, lane.workers)

    ctx.record.asked = req.model
    return await ctx.router.call(req.model, attempt, vision=req.has_images(), caller=ctx.record, calls=req.n or 1)


def _wants_usage(req: ChatCompletionRequest) -> bool:
    return bool(req.stream_options and req.stream_options.include_usage)


async def _noting_usage(ctx: Context, events: AsyncIterator[dict[str, Any]], *, show: bool
                        ) -> AsyncGenerator[dict[str, Any], None]:
    """A provider's chunks, its usage noted in the record; usage is shown only to a client that asked for it."""
    async with aclosing(cast(AsyncGenerator[dict[str, Any], None], events)):
        async for event in events:
            if isinstance(event, dict) and isinstance(event.get("usage"), dict):
                _note_usage(ctx, event["usage"])
                if not show:
                    if not event.get("choices"):
                        continue  # the usage-only chunk the client did not ask for
                    event = {k: v for k, v in event.items() if k != "usage"}
            elif not show and isinstance(event, dict) and "usage" in event:
                event = {k: v for k, v in event.items() if k != "usage"}
            yield event


async def _primed(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    """The provider's first event read now (an error there can still fail over), then the rest as they come."""
    try:
        with Waited():
            first = await anext(events, None)
    except BaseException:
        await cast(AsyncGenerator[dict[str, Any], None], events).aclose()
        raise

    async def rest() -> AsyncGenerator[dict[str, Any], None]:
        async with aclosing(cast(AsyncGenerator[dict[str, Any], None], events)):
            if first is not None:
                yield first
            async for event in events:
                yield event

    return rest()


async def _open_workers_stream(ctx: Context, req: ChatCompletionRequest, model_id: str,
                               client: WorkersAIClient) -> AsyncIterator[ChatCompletionChunk]:
    include_usage = _wants_usage(req)
    call = _plan(ctx, req, model_id, stream=True)
    json_mode = req.response_format is not None and req.response_format.type != "text"
    if (not streams_upstream(model_id) or (not call.chat_dialect and (json_mode or call.forced_tools))
            or not call.tools.identity):
        # Answer whole, then replay as chunks: what cannot stream upstream (reference §2.4, §2.6), forced calls
        # on native models (recovered when answered in text: service.forced), and custom or namespaced tools
        # (their calls are mapped back whole).
        completion = await _complete(ctx, req, model_id, client)
        return _replay(completion_to_chunks(completion, include_usage=include_usage))
    streams = await gather_all(_upstream(ctx, call, client.stream) for _ in range(req.n or 1))
    return await _stream(ctx, req, call, streams, client, include_usage=include_usage)


class _Choice:
    """One upstream stream feeding one choice index."""

    def __init__(self, ctx: Context, req: ChatCompletionRequest, call: WorkersChatCall, upstream: UpstreamStream,
                 index: int, client: WorkersAIClient) -> None:
        self.ctx, self.req, self.call, self.upstream, self.client = ctx, req, call, upstream, client
        self.reads = _sse_reads(upstream.chunks) if upstream.chunks is not None else None
        self.first: list[str] | None = None  # the events of the first upstream read, taken by prime()
        self.translator = ChoiceStream(index=index, new_call_id=lambda: ctx.ids("call"), stop=call.stop,
                                       max_tokens_sent=call.max_tokens_sent, max_tool_calls=call.max_tool_calls)

    def usage(self) -> ParsedUsage:
        return self.translator.usage or ParsedUsage(
            prompt_tokens=estimate_tokens(prompt_text(self.req)),
            completion_tokens=estimate_tokens("x" * self.translator.text_chars),
        )

    async def prime(self) -> None:
        """Read up to the first events before anything is sent: an error there (an error event, or a stream
        that ends with no event at all) is raised now, while the router can still fail over."""
        if self.reads is None:
            return
        try:
            with Waited():
                self.first = await anext(self.reads, [])
            if not self.first:
                raise UpstreamStreamError("Workers AI ended the stream before sending anything.")
            data = self.first[0]
            if data.strip() != "[DONE]":
                event = _event_json(data)
                if is_error_event(event):
                    self.translator.feed(event)  # raises the mapped mid-stream error
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the upstream stream unread (a failure before the first chunk)."""
        if self.reads is not None:
            await self.reads.aclose()
        await self.upstream.aclose()

    async def _events(self) -> AsyncGenerator[list[str], None]:
        assert self.reads is not None
        if self.first:
            yield self.first
        async for payloads in self.reads:
            yield payloads

    async def deltas(self) -> AsyncGenerator[list[ChunkChoice], None]:
        done = False
        try:
            if self.reads is None:
                async for item in self._from_result():
                    yield item
                return
            # One list per upstream read (usually several events), so the proxy writes it in one send.
            async with aclosing(self.reads), aclosing(self._events()) as reads:
                async for payloads in reads:
                    out: list[ChunkChoice] = []
                    for data in payloads:
                        if data.strip() == "[DONE]":
                            done = True
                            break
                        try:
                            out += self.translator.feed(_event_json(data))
                        except Exception:
                            if out:
                                yield out  # what came before the bad event still reaches the client
                            raise
                    if out:
                        yield out
                    if done:
                        break
            yield self.translator.finish(done=done)
        finally:
            await self.upstream.aclose(drain=done)

    async def _from_result(self) -> AsyncIterator[list[ChunkChoice]]:
        """The model answered JSON to a stream request: use it, or ask again without streaming."""
        try:
            parsed = parse_chat_result(self.upstream.result)
        except UpstreamError:
            body = {k: v for k, v in self.call.body.items() if k not in ("stream", "stream_options")}
            parsed = parse_chat_result(await self.client.run(self.call.model_id, body))
        completion = from_workers_chat(self.req, self.call, [parsed], completion_id="", created=0,
                                       new_call_id=lambda: self.ctx.ids("call"))
        self.translator.usage = ParsedUsage(
            prompt_tokens=completion["usage"]["prompt_tokens"],
            completion_tokens=completion["usage"]["completion_tokens"])
        for item in completion_to_chunks(completion, include_usage=False):
            for choice in item["choices"]:
                choice["index"] = self.translator.index
            yield item["choices"]


async def _sse_reads(chunks: AsyncIterator[bytes]) -> AsyncGenerator[list[str], None]:
    """The `data` of the SSE events each upstream read completed, however the bytes were split."""
    decoder = SSEDecoder()
    async for raw in chunks:
        events = decoder.decode(raw)
        if events:
            yield [event.data for event in events]
    tail = decoder.flush()
    if tail:
        yield [event.data for event in tail]


def _event_json(data: str) -> object:
    try:
        return jsonfast.loads(data)
    except ValueError:
        raise UpstreamStreamError("Workers AI sent a malformed stream event (not JSON).") from None


class ChunkStream:
    """A chat stream's chunks; `batches()` gives them in the groups they arrived in from upstream, so the
    proxy can write a group in one send (one per upstream read, not one per token: bench/run.py)."""

    def __init__(self, batches: AsyncGenerator[list[ChatCompletionChunk], None]) -> None:
        self._batches = batches
        self._pending: deque[ChatCompletionChunk] = deque()

    def __aiter__(self) -> ChunkStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        while not self._pending:
            self._pending.extend(await self._batches.__anext__())  # StopAsyncIteration ends us too
        return self._pending.popleft()

    def batches(self) -> AsyncGenerator[list[ChatCompletionChunk], None]:
        return self._batches

    async def aclose(self) -> None:
        await self._batches.aclose()


async def _stream(ctx: Context, req: ChatCompletionRequest, call: WorkersChatCall, streams: list[UpstreamStream],
                  client: WorkersAIClient, *, include_usage: bool) -> ChunkStream:
    choices = [_Choice(ctx, req, call, upstream, i, client) for i, upstream in enumerate(streams)]
    try:
        await gather_all(choice.prime() for choice in choices)
    except BaseException:
        for choice in choices:  # the others were fine: close them too, nothing will read them
            await choice.close()
        raise
    return ChunkStream(_stream_batches(ctx, req, call, choices, include_usage=include_usage))


async def _stream_batches(ctx: Context, req: ChatCompletionRequest, call: WorkersChatCall, choices: list[_Choice],
                          *, include_usage: bool) -> AsyncGenerator[list[ChatCompletionChunk], None]:
    completion_id, created = ctx.ids("chatcmpl"), ctx.now()

    def wrap(choice: ChunkChoice) -> ChatCompletionChunk:
        # One choice delta per chunk: clients merge deltas by index, chunk by chunk.
        return chunk([choice], completion_id=completion_id, created=created, model=call.model_id,
                     include_usage=include_usage)

    try:
        async with aclosing(choices[0].deltas() if len(choices) == 1 else _merge(choices)) as groups:
            async for deltas in groups:
                yield [wrap(choice) for choice in deltas]
    finally:
        # Whether or not the client asked to see usage, and also when it hung up: what was spent counts.
        total = sum_usage(c.usage() for c in choices)
        ctx.record.add_usage(total.prompt_tokens, total.completion_tokens)
    if include_usage:
        yield [chunk([], completion_id=completion_id, created=created, model=call.model_id, usage=usage_out(total),
                     include_usage=True)]


async def _merge(choices: list[_Choice]) -> AsyncGenerator[list[ChunkChoice], None]:
    """Interleave several choices' deltas as they arrive (n > 1)."""
    queue: asyncio.Queue[list[ChunkChoice] | Exception | None] = asyncio.Queue(maxsize=64)

    async def pump(choice: _Choice) -> None:
        try:
            async for deltas in choice.deltas():
                await queue.put(deltas)
            await queue.put(None)
        except Exception as exc:  # handed to the consumer, which re-raises it
            await queue.put(exc)

    tasks = [asyncio.create_task(pump(c)) for c in choices]
    try:
        remaining = len(tasks)
        while remaining:
            item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
