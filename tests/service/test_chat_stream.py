"""service.chat_stream: priming, merging and closing streams, whatever their source.

The proxy-level behaviour (failover before the first byte, in-band errors, n > 1 answers) is tested through
the routes in tests/server; these pin the machinery every source shares.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest
from starlette.types import Message

from cfai_cli.errors import UpstreamError, UpstreamStreamError
from cfai_cli.server.routes.common import sse_response
from cfai_cli.service.chat_stream import ChatStream, EventStream, merge, prime, prime_all
from cfai_cli.service.gather import open_all
from cfai_cli.service.record import RequestRecord

pytestmark = pytest.mark.anyio


class Source:
    """A source of batches that records how far it was read and whether it was closed."""

    def __init__(self, items: list[list[int]], *, fail_at: int | None = None, delay: float = 0.0,
                 stall: bool = False) -> None:
        self.items, self.fail_at, self.delay, self.stall = items, fail_at, delay, stall
        self.read = 0
        self.closed = False

    async def run(self) -> AsyncGenerator[list[int], None]:
        try:
            for i, item in enumerate(self.items):
                if self.fail_at == i:
                    raise UpstreamStreamError(f"broke at {i}")
                await asyncio.sleep(self.delay)
                self.read += 1
                yield item
            if self.stall:
                await asyncio.sleep(30)
        finally:
            self.closed = True


async def test_prime_reads_the_first_batch_now_and_gives_the_same_items() -> None:
    source = Source([[1], [2, 3]])
    record = RequestRecord()
    primed = await prime(source.run(), record)
    assert source.read == 1 and not source.closed
    assert [batch async for batch in primed] == [[1], [2, 3]]
    assert source.closed


async def test_a_failure_while_priming_is_raised_and_closes_the_source() -> None:
    source = Source([[1]], fail_at=0)
    with pytest.raises(UpstreamStreamError, match="broke at 0"):
        await prime(source.run(), None)
    assert source.closed


async def test_an_empty_source_primes_to_an_empty_stream() -> None:
    assert [batch async for batch in await prime(Source([]).run(), None)] == []


async def test_priming_several_closes_them_all_when_one_fails() -> None:
    good, bad = Source([[1], [2]]), Source([[1]], fail_at=0, delay=0.01)
    with pytest.raises(UpstreamStreamError):
        await prime_all([good.run(), bad.run()], None)
    assert good.closed and bad.closed


async def test_merge_interleaves_as_items_come_and_closes_every_source() -> None:
    slow, fast = Source([[1], [2]], delay=0.05), Source([[10], [20], [30]], delay=0.001)
    merged = [item async for item in merge([slow.run(), fast.run()])]
    assert sorted(merged) == [[1], [2], [10], [20], [30]]
    assert merged[0] == [10] and merged.index([1]) > merged.index([10])  # not one source after the other
    assert slow.closed and fast.closed


async def test_a_failing_source_raises_its_own_error_and_cancels_the_others() -> None:
    stalled, broken = Source([[1]], stall=True), Source([[7], [8]], fail_at=1, delay=0.01)
    seen: list[list[int]] = []
    with pytest.raises(UpstreamStreamError, match="broke at 1"):  # itself, not an ExceptionGroup
        async for item in merge([stalled.run(), broken.run()]):
            seen.append(item)
    assert sorted(seen) == [[1], [7]]
    assert stalled.closed and broken.closed


async def test_closing_a_merge_early_closes_every_source() -> None:
    first, second = Source([[1]], stall=True), Source([[2]], stall=True)
    merged = merge([first.run(), second.run()])
    assert await anext(merged) in ([1], [2])
    await merged.aclose()
    assert first.closed and second.closed


async def test_a_stream_gives_batches_without_empty_ones_or_items_one_by_one() -> None:
    source = Source([[], [1, 2], [], [3]])
    stream: EventStream[int] = EventStream(source.run())
    assert [batch async for batch in stream.batches()] == [[1, 2], [3]]
    assert [item async for item in EventStream(Source([[1, 2], [], [3]]).run())] == [1, 2, 3]
    replayed = ChatStream.replay([{"id": "a"}, {"id": "b"}])  # type: ignore[list-item]
    assert [batch async for batch in replayed.batches()] == [[{"id": "a"}, {"id": "b"}]]


async def test_closing_a_stream_closes_its_source_even_if_never_read() -> None:
    source = Source([[1]])
    async with EventStream(await prime(source.run(), None)):
        pass
    assert source.closed


async def test_open_all_closes_the_streams_that_opened_when_one_fails() -> None:
    opened: list[EventStream[int]] = []
    sources = [Source([[1]]), Source([[2]])]

    async def opening(source: Source) -> EventStream[int]:
        stream = EventStream(await prime(source.run(), None))
        opened.append(stream)
        return stream

    async def refused() -> EventStream[int]:
        await asyncio.sleep(0.01)
        raise UpstreamError("no")

    with pytest.raises(UpstreamError):
        await open_all([opening(sources[0]), opening(sources[1]), refused()])
    assert len(opened) == 2 and all(source.closed for source in sources)


async def test_open_all_opens_one_stream_in_the_callers_task_and_raises_its_failure() -> None:
    # One stream (n = 1) needs no task of its own: the caller's task opens it, as it will read it.
    caller = asyncio.current_task()
    seen: list[asyncio.Task[object] | None] = []
    source = Source([[1]])

    async def opening() -> EventStream[int]:
        seen.append(asyncio.current_task())
        return EventStream(await prime(source.run(), None))

    [stream] = await open_all([opening()])
    assert seen == [caller]
    assert [batch async for batch in stream.batches()] == [[1]]

    async def refused() -> EventStream[int]:
        raise UpstreamError("no")

    with pytest.raises(UpstreamError, match="no"):
        await open_all(iter([refused()]))  # any iterable, as the services pass generators


async def test_an_sse_answer_closes_its_stream_when_the_client_is_gone_before_a_byte() -> None:
    source = Source([[{"id": 1}]], stall=True)  # type: ignore[list-item]
    response = sse_response(EventStream(await prime(source.run(), None)))

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        raise OSError("the client hung up")

    with pytest.raises(OSError):
        await response({"type": "http", "asgi": {"spec_version": "2.4"}}, receive, send)
    assert source.closed


async def test_a_stream_made_from_others_closes_them_even_if_never_read() -> None:
    under = Source([[1]], stall=True)
    inner = EventStream(await prime(under.run(), None))

    async def doubled() -> AsyncGenerator[list[int], None]:
        async for batch in inner.batches():
            yield [2 * item for item in batch]

    await EventStream(doubled(), owns=(inner,)).aclose()  # never started: only `owns` can reach `inner`
    assert under.closed
