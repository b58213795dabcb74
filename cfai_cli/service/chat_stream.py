"""A streamed answer: `EventStream`, and `ChatStream`, the one type of a chat answer whatever its source.

Every source yields *batches* of chunks (one per read from the network, so the proxy writes a batch in one
send instead of one per token: bench/run.py): Workers AI's SSE translated (service.workers_stream), an
OpenAI-compatible upstream's chunks (service.chat), a whole answer replayed (models that cannot stream, forced
tool calls). Opening a source primes it with `prime`: its first batch is read before the answer starts, so an
error there can still fail over to the next target. The `n > 1` choices of one answer are read side by side
by `merge`. The other streamed answers (text completions, Responses API events) are EventStreams made from a
ChatStream, so the proxy writes every stream the same way. Closing a stream closes its upstream responses;
whether their connections serve again is the transport's business (upstream.network).

Imports core, service.gather, and upstream.provider (where waiting is counted); anyio for `n > 1` only.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Iterable, Sequence
from contextlib import aclosing
from types import TracebackType
from typing import Generic, Protocol, Self, TypeVar

from cfai_cli.core.openai.chat import ChatCompletionChunk
from cfai_cli.service.gather import Closable, gather_all
from cfai_cli.upstream.provider import Waited, WaitLog

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
E = TypeVar("E")


class LastBatch(list[T], Generic[T]):
    """A source's last batch, marked as such when it is known to be last as it is made (a Workers AI stream's
    `[DONE]` came with it): what the stream does after it (closing the upstream response, counting the usage,
    a usage chunk) reads nothing more from upstream, so a writer may send it with the end of the answer."""

    __slots__ = ()


class Batches(Protocol[T_co]):
    """What an EventStream reads its batches from: an async generator, or an async iterator class that closes
    what it reads with `aclose` (service.workers_stream's `_Answer`)."""

    def __anext__(self) -> Awaitable[T_co]: ...

    async def aclose(self) -> None: ...


class EventStream(Generic[E]):
    """The events of one streamed answer. `batches()` gives them in the groups they arrived in (empty groups
    left out); iterating the stream itself gives them one by one. Close it (or `async with` it) when done:
    that closes its upstream responses, whether or not it was read. `owns` are the streams `batches` reads
    from, closed with it: a generator that never started cannot close what it holds. `ending` turns true
    with a `LastBatch`: from there to its end the stream waits for no upstream read."""

    __slots__ = ("_batches", "_owns", "_pending", "ending")

    def __init__(self, batches: Batches[list[E]], *, owns: Sequence[Closable] = ()) -> None:
        self._batches = batches
        self._owns = owns
        self._pending: deque[E] = deque()
        self.ending = False

    def batches(self) -> AsyncIterator[list[E]]:
        return _Batches(self)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> E:
        while not self._pending:
            self._pending.extend(await self._batches.__anext__())  # StopAsyncIteration ends us too
        return self._pending.popleft()

    async def aclose(self) -> None:
        try:
            await self._batches.aclose()
        finally:
            for owned in self._owns:
                await owned.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()


class _Batches(Generic[E]):
    """`EventStream.batches()`: its batches but the empty ones, `ending` set at a `LastBatch`. An iterator, not an
    async generator: one generator less a stream (its first-iteration hook, its finalizer), as it closes nothing
    (the stream's owner closes the stream)."""

    __slots__ = ("_stream",)

    def __init__(self, stream: EventStream[E]) -> None:
        self._stream = stream

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> list[E]:
        stream = self._stream
        while True:
            batch = await stream._batches.__anext__()  # StopAsyncIteration ends us too
            if batch:
                if type(batch) is LastBatch:
                    stream.ending = True
                return batch


class ChatStream(EventStream[ChatCompletionChunk]):
    """A chat answer's `chat.completion.chunk`s, from any source."""

    __slots__ = ()

    @classmethod
    def replay(cls, chunks: Iterable[ChatCompletionChunk]) -> ChatStream:
        """A whole answer's chunks as a stream of one batch (it was answered whole, so they are all here)."""
        return cls(_one_batch(list(chunks)))


async def _one_batch(batch: list[ChatCompletionChunk]) -> AsyncGenerator[list[ChatCompletionChunk], None]:
    yield LastBatch(batch)


class Source(Protocol[T_co]):
    """A primed source (`prime`): its items read in turn, and closed by its owner however the reading ends."""

    def __aiter__(self) -> Source[T_co]: ...

    def __anext__(self) -> Awaitable[T_co]: ...

    async def aclose(self) -> None: ...


async def prime(source: AsyncGenerator[T, None], waits: WaitLog | None) -> Source[T]:
    """`source` with its first item read now: a failure there (a refused request, an error event, a stream
    that ends before anything) is raised here, before the answer starts, while the router can still fail
    over; then the same items as `source`. The source is closed if priming fails, and by the result."""
    try:
        with Waited(waits):
            first = await anext(source)
    except StopAsyncIteration:
        return _Primed(source, [])
    except BaseException:
        await source.aclose()
        raise
    return _Primed(source, [first])


class _Primed(Generic[T]):
    """`prime`'s result: the item read first, then the rest of `source`; closing it closes `source`. An iterator
    class, not an async generator (`_chain` was): no first-iteration hook and no `asend` per item (a 20-chunk
    stream's first write ~1.143 -> ~1.132 M instructions, bench/stream_cpu.py --first under callgrind;
    docs/performance.md, "First event round 9")."""

    __slots__ = ("_first", "_source")

    def __init__(self, source: AsyncGenerator[T, None], first: list[T]) -> None:
        self._source = source
        self._first = first  # the item read first while it is not taken (none for a source that had none)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        if self._first:
            return self._first.pop()
        return await self._source.__anext__()  # StopAsyncIteration (or the failure) ends us too

    async def aclose(self) -> None:
        self._first.clear()
        await self._source.aclose()


async def prime_all(sources: Sequence[AsyncGenerator[T, None]], waits: WaitLog | None
                    ) -> list[Source[T]]:
    """`prime` each source side by side; if one fails, the others are closed and the failure raised."""
    if len(sources) == 1:
        return [await prime(sources[0], waits)]
    try:
        return await gather_all(prime(source, waits) for source in sources)
    except BaseException:
        for source in sources:  # the primed ones hold open responses that nothing will read now
            await source.aclose()
        raise


async def merge(sources: Sequence[Source[T]]) -> AsyncGenerator[T, None]:
    """The items of several sources, interleaved as they come (the choices of an answer with `n > 1`).

    A task group reads the sources into a memory stream, in a task of its own: a task group must not span an
    async generator's yields (the consumer's cancel scopes would interleave with the group's), so this
    generator only receives. A failing source cancels the others and its failure is raised here; closing
    this generator cancels the readers, and each source is closed by the reader that read it.
    """
    import anyio  # here: an answer of one choice (every one-shot `cfai chat`) never needs it

    send, receive = anyio.create_memory_object_stream[T](len(sources))

    async def read(source: Source[T]) -> None:
        async with aclosing(source):
            async for item in source:
                await send.send(item)

    async def read_all() -> None:
        # `send` is closed when every reader is done (or failed): the receiving loop then ends.
        async with send, anyio.create_task_group() as group:
            for source in sources:
                group.start_soon(read, source)

    reader = asyncio.get_running_loop().create_task(read_all())
    try:
        async with receive:
            async for item in receive:
                yield item
        try:
            await reader
        except BaseExceptionGroup as failed:
            raise _first(failed) from None
    finally:
        if not reader.done():
            reader.cancel()
            with anyio.CancelScope(shield=True):  # the readers' clean-up closes upstream responses: let it run
                await asyncio.wait([reader])


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The failure a task group reports, out of its group (the first one; there is usually one)."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
