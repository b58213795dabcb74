"""service.chat.gather_all: results in order, and the first failure raised with the rest cancelled."""

from __future__ import annotations

import asyncio

import pytest

from cfai_cli.errors import UpstreamError
from cfai_cli.service.gather import gather_all

pytestmark = pytest.mark.anyio


async def value(v: int, delay: float = 0.0) -> int:
    await asyncio.sleep(delay)
    return v


async def test_results_come_back_in_order_for_none_one_and_many() -> None:
    assert await gather_all([]) == []
    assert await gather_all([value(7)]) == [7]
    assert await gather_all(value(i, 0.01 * (3 - i)) for i in range(3)) == [0, 1, 2]


async def test_a_single_failure_is_raised_as_itself() -> None:
    async def fail() -> int:
        raise UpstreamError("boom")

    with pytest.raises(UpstreamError, match="boom"):
        await gather_all([fail()])


async def test_the_first_failure_cancels_the_others() -> None:
    cancelled: list[int] = []

    async def slow(i: int) -> int:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(i)
            raise
        return i

    async def fail() -> int:
        await asyncio.sleep(0.01)
        raise UpstreamError("first")

    with pytest.raises(UpstreamError, match="first"):
        await asyncio.wait_for(gather_all([slow(1), fail(), slow(2)]), 5)
    assert sorted(cancelled) == [1, 2]
