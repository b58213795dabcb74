"""Running a request's upstream calls side by side: all of them, or none once one fails (and streams that
did open are closed).

Imports only asyncio. Used by every service that fans out (choices, prompts, batches, images, pieces).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Protocol, TypeVar

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


class Closable(Protocol):
    async def aclose(self) -> None: ...


C = TypeVar("C", bound=Closable)


async def open_all(opens: Iterable[Awaitable[C]]) -> list[C]:
    """Open several streams side by side (gather_all); if one fails, the ones that did open are closed.

    One stream (`n` = 1, nearly every request) is opened in place, as service.chat's `_complete` awaits its one
    call: gather_all's task, gather and the loop's extra turn to wake the request's task were ~71 k of a
    20-chunk stream's 1.74 M instructions, all of them before its first event (bench/stream_cpu.py, callgrind,
    2026-12-02, round 7)."""
    opens = list(opens)
    if len(opens) == 1:
        return [await opens[0]]  # nothing else opened: a failure has nothing to close
    opened: list[C] = []

    async def one(opening: Awaitable[C]) -> C:
        stream = await opening
        opened.append(stream)
        return stream

    try:
        return await gather_all(one(opening) for opening in opens)
    except BaseException:
        for stream in opened:  # nothing will read them now
            await stream.aclose()
        raise
