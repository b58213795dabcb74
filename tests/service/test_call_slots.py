"""service.record.CallSlots: at most `limit` of a request's upstream calls at once, as asyncio.Semaphore(limit)."""

from __future__ import annotations

import asyncio

import pytest

from cfai_cli.service.record import CallSlots

pytestmark = pytest.mark.anyio


async def _calls(slots: CallSlots, count: int, *, first_alone: bool) -> tuple[int, list[int]]:
    inside, most, order = [0], [0], []
    gate = asyncio.Event()

    async def call(i: int) -> None:
        async with slots:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            order.append(i)
            if i == 0:
                await gate.wait()
            else:
                await asyncio.sleep(0.001)
            inside[0] -= 1

    tasks = [asyncio.create_task(call(0))]
    if first_alone:
        await asyncio.sleep(0)  # the first call is in before any other is made
    tasks += [asyncio.create_task(call(i)) for i in range(1, count)]
    await asyncio.sleep(0.02)
    gate.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)  # a slot never given back would keep a call waiting
    return most[0], order


@pytest.mark.parametrize("first_alone", [True, False])
@pytest.mark.parametrize("limit", [1, 2, 3])
async def test_never_more_than_the_limit_inside(limit: int, first_alone: bool) -> None:
    slots = CallSlots(limit)
    most, order = await _calls(slots, 7, first_alone=first_alone)
    assert most == limit and sorted(order) == list(range(7))
    most, _ = await _calls(slots, 7, first_alone=True)  # the slots all came back
    assert most == limit


async def test_one_call_after_another_never_waits() -> None:
    slots = CallSlots(1)

    async def one_after_another() -> None:
        for _ in range(3):
            async with slots:
                pass

    await asyncio.wait_for(one_after_another(), 1)


async def test_a_waiting_call_cancelled_takes_no_slot() -> None:
    slots = CallSlots(1)
    await slots.__aenter__()
    waiting = asyncio.create_task(slots.__aenter__())
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await slots.__aexit__(None, None, None)
    await asyncio.wait_for(slots.__aenter__(), 0.1)  # the one slot is free again
