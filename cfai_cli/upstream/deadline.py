"""A call's deadline as a plain `with` block: `asyncio.timeout_at`'s rules at half its cost.

Imports asyncio only. The Workers AI client runs every call inside one total deadline (upstream.workers'
`_with_retries`); that scope is entered once for every upstream call, so once for nearly every request the proxy
serves. `asyncio.timeout_at` is an async context manager (two coroutines a use) written for every case it allows
(rescheduling, `when=None`, `expired()`, its states as an Enum); this keeps what the client uses, with the same
rules as 3.11's: at `when` the task is cancelled; leaving the block with the CancelledError that cancellation
caused (and no other cancellation of the task since it entered) raises TimeoutError instead; any other
cancellation (the client gone, an outer scope) passes through as it came; a deadline already past cancels at
the first await. Measured (callgrind, uvloop, a loop turn's own cost taken away): `async with
asyncio.timeout_at(...)` ~26k instructions, this ~14k, most of the rest the timer (`call_at` and its cancel,
~4k). docs/performance.md, "Chat at c=1 round 7".
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class Deadline:
    """`with Deadline(when):` inside a task: TimeoutError if the block is still running at loop time `when`.
    `loop`, when the caller has it, is the running loop (on 3.11 each get_running_loop is a getpid system call)."""

    __slots__ = ("_cancelling", "_expired", "_handle", "_loop", "_task", "_when")

    def __init__(self, when: float, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._when = when
        self._loop = loop
        self._expired = False

    def __enter__(self) -> Deadline:
        loop = self._loop or asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("a Deadline is used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        when = self._when
        self._handle: asyncio.Handle = (loop.call_soon(self._expire) if when <= loop.time()
                                        else loop.call_at(when, self._expire))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._handle.cancel()
        # As asyncio.Timeout: the cancellation it made is taken back whatever ended the block; only when no other
        # cancellation came meanwhile does the CancelledError become the TimeoutError.
        if (self._expired and self._task.uncancel() <= self._cancelling and exc_type is not None
                and issubclass(exc_type, asyncio.CancelledError)):
            raise TimeoutError from exc

    def expired(self) -> bool:
        return self._expired

    def _expire(self) -> None:
        self._task.cancel()
        self._expired = True
