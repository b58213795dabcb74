"""upstream.deadline.Deadline keeps asyncio.timeout_at's rules: each case runs through both and must end the same
way (the outcome, and the task's cancellation count after it), on the default loop and on uvloop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from cfai_cli.upstream.deadline import Deadline

Scope = Callable[[float], contextlib.AbstractAsyncContextManager[object]]


@contextlib.asynccontextmanager
async def ours(when: float) -> AsyncIterator[object]:
    with Deadline(when) as deadline:
        yield deadline


@contextlib.asynccontextmanager
async def ours_given_the_loop(when: float) -> AsyncIterator[object]:
    with Deadline(when, asyncio.get_running_loop()) as deadline:
        yield deadline


def stdlib(when: float) -> contextlib.AbstractAsyncContextManager[object]:
    return asyncio.timeout_at(when)


async def in_time(scope: Scope, loop: asyncio.AbstractEventLoop) -> str:
    async with scope(loop.time() + 0.2):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)  # past the deadline: its timer must not fire after the block
    return "done"


async def overrun(scope: Scope, loop: asyncio.AbstractEventLoop) -> str:
    async with scope(loop.time() + 0.02):
        await asyncio.sleep(1)
    return "not reached"


async def already_past(scope: Scope, loop: asyncio.AbstractEventLoop) -> str:
    async with scope(loop.time() - 1):
        await asyncio.sleep(0)
        return "ran past the deadline"


async def swallowed(scope: Scope, loop: asyncio.AbstractEventLoop) -> str:
    async with scope(loop.time() + 0.02):
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            return "swallowed"
    return "not reached"


async def replaced(scope: Scope, loop: asyncio.AbstractEventLoop) -> str:
    async with scope(loop.time() + 0.02):
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            raise ValueError("another error") from None
    return "not reached"


async def outer_timeout_first(scope: Scope, loop: asyncio.AbstractEventLoop) -> str:
    try:
        async with asyncio.timeout(0.02):
            async with scope(loop.time() + 1):
                await asyncio.sleep(2)
    except TimeoutError:
        return "the outer timeout"
    return "not reached"


async def inner_first_in_outer(scope: Scope, loop: asyncio.AbstractEventLoop) -> str:
    async with asyncio.timeout(1):
        try:
            async with scope(loop.time() + 0.02):
                await asyncio.sleep(2)
        except TimeoutError:
            return "the inner deadline"
    return "not reached"


CASES: list[Callable[[Scope, asyncio.AbstractEventLoop], Awaitable[str]]] = [
    in_time, overrun, already_past, swallowed, replaced, outer_timeout_first, inner_first_in_outer]


async def outcome(case: Callable[[Scope, asyncio.AbstractEventLoop], Awaitable[str]], scope: Scope) -> tuple[str, int]:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    try:
        result = await case(scope, loop)
    except BaseException as exc:  # the outcome is what is compared
        result = type(exc).__name__
    return result, task.cancelling()


async def cancelled_from_outside(scope: Scope, *, at_expiry: bool) -> tuple[str, int]:
    """Another task cancels the one in the block: before the deadline, or in the turn the deadline fires."""
    loop = asyncio.get_running_loop()
    inside = asyncio.Event()

    async def body() -> tuple[str, int]:
        task = asyncio.current_task()
        assert task is not None
        when = loop.time() + 0.05
        try:
            async with scope(when):
                if at_expiry:  # due with the deadline's timer, made in the same turn (one loop time): they fire
                    loop.call_at(when, task.cancel)  # together, whatever the load (made a turn later, not always)
                inside.set()
                await asyncio.sleep(1)
            result = "not reached"
        except BaseException as exc:
            result = type(exc).__name__
        return result, task.cancelling()

    task = asyncio.create_task(body())
    await inside.wait()
    if not at_expiry:
        task.cancel()
    return await task


def run(factory: Callable[[], Awaitable[tuple[str, int]]], flavour: str) -> tuple[str, int]:
    if flavour == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return uvloop.run(factory())  # type: ignore[no-any-return]
    return asyncio.run(factory())  # type: ignore[arg-type]


@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
def test_each_case_ends_as_with_asyncio_timeout_at(case: Callable[[Scope, asyncio.AbstractEventLoop], Awaitable[str]],
                                                  flavour: str) -> None:
    expected = run(lambda: outcome(case, stdlib), flavour)
    assert run(lambda: outcome(case, ours), flavour) == expected
    assert run(lambda: outcome(case, ours_given_the_loop), flavour) == expected
    assert expected[0] != "not reached"


@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
@pytest.mark.parametrize("at_expiry", [False, True])
def test_a_cancellation_from_elsewhere_passes_through(flavour: str, at_expiry: bool) -> None:
    expected = run(lambda: cancelled_from_outside(stdlib, at_expiry=at_expiry), flavour)
    assert run(lambda: cancelled_from_outside(ours, at_expiry=at_expiry), flavour) == expected
    assert expected[0] == "CancelledError"


def test_outside_a_running_loop_it_is_refused() -> None:
    async def enter() -> None:
        with Deadline(0.0):
            pass

    with pytest.raises(RuntimeError):
        enter().send(None)  # a coroutine stepped by hand: a loop is running nowhere
