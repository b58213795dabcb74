"""A chat answer streamed from Workers AI: one upstream stream per choice, its SSE events translated to
OpenAI deltas (core.translate.chat_stream), a batch per upstream read, then made a `ChatStream`.

Imports core, errors, upstream (the stream type, the client) and service (the request's Context, the
stream machinery of service.chat_stream). `service.chat` opens the upstream streams and hands them here.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from cfai_cli.core import jsonfast
from cfai_cli.core.cost import reported_neurons
from cfai_cli.core.openai.chat import ChatCompletionChunk, ChatCompletionRequest, ChunkChoice
from cfai_cli.core.sse import SSEDecoder
from cfai_cli.core.translate.chat import WorkersChatCall
from cfai_cli.core.translate.chat_answer import estimate_tokens, from_workers_chat, prompt_text, sum_usage, usage_out
from cfai_cli.core.translate.chat_stream import ChoiceStream, chunk, chunk_each, completion_to_chunks
from cfai_cli.core.workers.chat import ParsedUsage, parse_chat_result
from cfai_cli.errors import UpstreamError, UpstreamStreamError
from cfai_cli.service.chat_stream import Batches, ChatStream, LastBatch, Source, merge, prime_all
from cfai_cli.service.context import Context
from cfai_cli.upstream.workers import WorkersAIClient
from cfai_cli.upstream.workers_answers import UpstreamStream


class _Choice:
    """One upstream stream feeding one choice index: its deltas, and the tokens it used."""

    def __init__(self, ctx: Context, req: ChatCompletionRequest, call: WorkersChatCall, upstream: UpstreamStream,
                 index: int, client: WorkersAIClient) -> None:
        self.ctx, self.req, self.call, self.upstream, self.client = ctx, req, call, upstream, client
        self.neurons: float | None = None  # the last `usage.neurons` an event reported (its running total)
        self.translator = ChoiceStream(index=index, new_call_id=lambda: ctx.ids("call"), stop=call.stop,
                                       max_tokens_sent=call.max_tokens_sent, max_tool_calls=call.max_tool_calls)

    def usage(self) -> ParsedUsage:
        return self.translator.usage or ParsedUsage(
            prompt_tokens=estimate_tokens(prompt_text(self.req)),
            completion_tokens=estimate_tokens("x" * self.translator.text_chars),
        )

    async def deltas(self) -> AsyncGenerator[list[ChunkChoice], None]:
        """The choice's deltas, a list per upstream read that completed events (possibly empty: the first
        one tells `prime` that the stream has started well). An error event, a malformed one, or a stream
        that ends before its first event raises; the upstream response is closed however this ends."""
        try:
            if self.upstream.chunks is None:
                yield await self._from_result()
                return
            done, started = False, False
            # The SSE decoding of each read is here, not an async generator of its own: one less a stream.
            decoder, chunks = SSEDecoder(), self.upstream.chunks
            seen = self._seen if self.upstream.neurons is None else None
            ended = False
            while not ended:
                raw = await anext(chunks, None)
                if raw is None:  # the data of the events each upstream read completed, however the bytes were split
                    ended = True
                    payloads = [event.data for event in decoder.flush()]
                else:
                    payloads = decoder.decode_data(raw)
                if not payloads:
                    continue
                started = True
                events, done, malformed = _events_json(payloads)
                out: list[ChunkChoice] = []
                try:
                    self.translator.feed_into(out, events, seen)
                    if malformed:
                        raise UpstreamStreamError("Workers AI sent a malformed stream event (not JSON).")
                except Exception:
                    if out:
                        yield out  # what came before the bad event still reaches the client
                    raise
                if done:
                    # The closing deltas leave with the last read's: one write less for every answer.
                    yield LastBatch(out + self.translator.finish(done=True))
                    return
                yield out
            if not started:
                raise UpstreamStreamError("Workers AI ended the stream before sending anything.")
            yield LastBatch(self.translator.finish(done=done))
        finally:
            await self.upstream.aclose()

    def _seen(self, event: object) -> None:
        """An event that may carry the count (in `usage`, which most events lack), when no header had it."""
        self.neurons = _or(reported_neurons(None, event), self.neurons)

    async def _from_result(self) -> list[ChunkChoice]:
        """The model answered JSON to a stream request: use it, or ask again without streaming."""
        try:
            parsed = parse_chat_result(self.upstream.result)
        except UpstreamError:
            body = {k: v for k, v in self.call.body.items() if k not in ("stream", "stream_options")}
            parsed = parse_chat_result(await self.client.run(self.call.model_id, body, affinity=self.call.affinity))
        completion = from_workers_chat(self.req, self.call, [parsed], completion_id="", created=0,
                                       new_call_id=lambda: self.ctx.ids("call"))
        self.translator.usage = parsed.usage or ParsedUsage(
            prompt_tokens=completion["usage"]["prompt_tokens"],
            completion_tokens=completion["usage"]["completion_tokens"])
        deltas: list[ChunkChoice] = []
        for item in completion_to_chunks(completion, include_usage=False):
            for choice in item["choices"]:
                choice["index"] = self.translator.index
                deltas.append(choice)
        return deltas


def _or(found: float | None, before: float | None) -> float | None:
    return before if found is None else found


def _events_json(datas: list[str]) -> tuple[list[object], bool, bool]:
    """The JSON of a read's events up to `[DONE]`, whether `[DONE]` came, and whether the events stop short at
    a malformed one (not JSON): those before it are there. All of them decoded by one `jsonfast.loads_all`
    when they are JSON up to an exact `[DONE]` (a stream's every read), else one by one."""
    try:
        end = datas.index("[DONE]")
    except ValueError:
        end = len(datas)
    try:
        return jsonfast.loads_all(datas[:end] if end < len(datas) else datas), end < len(datas), False
    except ValueError:
        pass
    events: list[object] = []
    for data in datas:
        if data.strip() == "[DONE]":
            return events, True, False
        try:
            events.append(jsonfast.loads(data))
        except ValueError:
            return events, False, True
    return events, False, False


async def workers_stream(ctx: Context, req: ChatCompletionRequest, call: WorkersChatCall,
                         streams: list[UpstreamStream], client: WorkersAIClient, *, include_usage: bool) -> ChatStream:
    """The answer of the opened upstream `streams` (one per choice), each primed (see service.chat_stream)."""
    choices = [_Choice(ctx, req, call, upstream, i, client) for i, upstream in enumerate(streams)]
    sources = await prime_all([choice.deltas() for choice in choices], ctx.record)
    return ChatStream(_Answer(ctx, call, choices, sources, include_usage=include_usage), owns=sources)


class _Answer:
    """The answer's batches of chunks from its choices' deltas (merged when `n > 1`); once they end, however they
    end (read to the end, failed, closed), the tokens and neurons they used go into the request's record, and a
    stream read to its end gives the usage chunk last when the client asked for it. An async iterator class, not
    an async generator (`_answer` was): no first-iteration hook, finalizer or `asend` per batch (a 20-chunk
    stream's first write 1.099 -> 1.080 M instructions, bench/stream_cpu.py --first under callgrind, 2026-12-02,
    round 10). Closed before its first batch was asked for, it does nothing, as the generator did: the stream's
    owner closes the sources."""

    __slots__ = ("_call", "_choices", "_created", "_ctx", "_groups", "_id", "_include_usage", "_one", "_sources",
                 "_state")

    def __init__(self, ctx: Context, call: WorkersChatCall, choices: list[_Choice],
                 sources: list[Source[list[ChunkChoice]]], *, include_usage: bool) -> None:
        self._ctx, self._call, self._choices, self._sources = ctx, call, choices, sources
        self._include_usage = include_usage
        self._one = len(sources) == 1
        self._groups: Batches[list[ChunkChoice]] | None = None
        self._id, self._created = "", 0
        self._state = 0  # 0: not started, 1: reading, 2: done

    def __aiter__(self) -> _Answer:
        return self

    async def __anext__(self) -> list[ChatCompletionChunk]:
        state = self._state
        if state == 0:
            self._id, self._created = self._ctx.ids("chatcmpl"), self._ctx.now()
            sources = self._sources
            self._groups = sources[0] if self._one else merge(sources)
            self._state = state = 1
        if state == 1:
            groups = self._groups
            assert groups is not None
            try:
                deltas = await groups.__anext__()
            except StopAsyncIteration:
                total = await self._end()
                if not self._include_usage:
                    raise
                return [chunk([], completion_id=self._id, created=self._created, model=self._call.model_id,
                              usage=usage_out(total), include_usage=True)]
            except BaseException:
                await self._end()
                raise
            chunks = chunk_each(deltas, completion_id=self._id, created=self._created, model=self._call.model_id,
                                include_usage=self._include_usage)
            # One choice's last batch is the answer's when it is the only choice (merged, the others may still be
            # streaming).
            return LastBatch(chunks) if self._one and type(deltas) is LastBatch else chunks
        raise StopAsyncIteration

    async def aclose(self) -> None:
        if self._state == 1:
            await self._end()
        self._state = 2

    async def _end(self) -> ParsedUsage:
        """The groups closed, then (whether or not the client asked to see usage, and also when it hung up: what
        was spent counts) the usage into the record; the usage, summed."""
        self._state = 2
        try:
            groups = self._groups
            assert groups is not None
            await groups.aclose()
        finally:
            choices = self._choices
            total = sum_usage(c.usage() for c in choices)
            self._ctx.record.add_usage(total.prompt_tokens, total.completion_tokens)
            for choice in choices:
                if choice.neurons is not None:
                    self._ctx.record.add_neurons(choice.neurons)
        return total
