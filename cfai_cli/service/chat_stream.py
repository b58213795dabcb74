"""The chunks of a chat answer streamed from Workers AI: one upstream stream per choice, each primed before
the answer starts (an error in its first events can still fail over), merged when `n` > 1, and written in
the groups they arrived in.

Imports core, errors, upstream (the stream type) and the request's Context. `service.chat` opens the
streams and hands them here.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing

from cfai_cli.core import jsonfast
from cfai_cli.core.openai.chat import ChatCompletionChunk, ChatCompletionRequest, ChunkChoice
from cfai_cli.core.sse import SSEDecoder
from cfai_cli.core.translate.chat import WorkersChatCall
from cfai_cli.core.translate.chat_answer import estimate_tokens, from_workers_chat, prompt_text, sum_usage, usage_out
from cfai_cli.core.translate.chat_stream import ChoiceStream, chunk, completion_to_chunks, is_error_event
from cfai_cli.core.workers.chat import ParsedUsage, parse_chat_result
from cfai_cli.errors import UpstreamError, UpstreamStreamError
from cfai_cli.service.context import Context
from cfai_cli.service.gather import gather_all
from cfai_cli.upstream.provider import Waited
from cfai_cli.upstream.workers import UpstreamStream, WorkersAIClient


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
            with Waited(self.ctx.record):
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


async def open_choices(ctx: Context, req: ChatCompletionRequest, call: WorkersChatCall, streams: list[UpstreamStream],
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
