"""store.hot: the pieces of one tick run in one transaction, in order, each seeing the writes before it; a piece that
fails fails alone; a write lock held elsewhere is waited for in a thread, never on the event loop."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cfai_cli.store.hot import HotPath

pytestmark = pytest.mark.anyio
SCHEMA = "CREATE TABLE IF NOT EXISTS seen (n INTEGER NOT NULL);"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def count_and_add(conn: sqlite3.Connection) -> int:
    (n,) = conn.execute("SELECT COUNT(*) FROM seen").fetchone()
    conn.execute("INSERT INTO seen (n) VALUES (?)", (n,))
    return int(n)


def broken(conn: sqlite3.Connection) -> int:
    conn.execute("INSERT INTO seen (n) VALUES (-1)")
    raise ValueError("a bug in one piece")


async def test_one_ticks_pieces_see_each_other_and_one_failure_stays_its_own(tmp_path: Path) -> None:
    hot = HotPath(tmp_path / "cfai.db")
    hot.ensure(SCHEMA)
    results = await asyncio.gather(*(hot.run(count_and_add) for _ in range(3)), hot.run(broken),
                                   *(hot.run(count_and_add) for _ in range(3)), return_exceptions=True)
    assert results[:3] == [0, 1, 2] and results[4:] == [3, 4, 5]
    assert isinstance(results[3], ValueError)
    assert sorted(row[0] for row in sqlite3.connect(tmp_path / "cfai.db").execute("SELECT n FROM seen")) == list(
        range(6))  # the broken piece's insert was rolled back, no other one was
    assert hot.call(count_and_add) == 6
    hot.close()


async def test_a_write_lock_held_elsewhere_is_waited_for_off_the_loop(tmp_path: Path) -> None:
    db = tmp_path / "cfai.db"
    hot = HotPath(db)
    hot.ensure(SCHEMA)
    other = sqlite3.connect(db, isolation_level=None)  # another worker, in the middle of its write
    other.execute("BEGIN IMMEDIATE")
    loop = asyncio.get_running_loop()
    loop.call_later(0.3, other.execute, "COMMIT")
    ticks = 0

    async def ticking() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(ticking())
    start = time.monotonic()
    assert await hot.run(count_and_add) == 0  # it waited for the lock...
    assert time.monotonic() - start >= 0.25
    assert ticks >= 10  # ... while the loop went on serving
    ticker.cancel()
    other.close()
    assert await hot.run(count_and_add) == 1  # and the loop's own connection is used again
    hot.close()


async def test_run_now_runs_a_piece_at_once_or_says_it_must_wait(tmp_path: Path) -> None:
    db = tmp_path / "cfai.db"
    hot = HotPath(db)
    hot.ensure(SCHEMA)
    assert hot.run_now(count_and_add) == (0,)
    assert hot.run_now(count_and_add) is None  # this turn of the loop ran a piece: the next ones share a transaction
    await asyncio.sleep(0)
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    assert hot.run_now(count_and_add) is None  # another connection writes: nothing written, nothing waited for
    other.execute("COMMIT")
    other.close()
    await asyncio.sleep(0)
    with pytest.raises(ValueError):
        hot.run_now(broken)
    await asyncio.sleep(0)
    assert hot.run_now(count_and_add) == (1,)  # the broken piece's insert was rolled back
    hot.close()


def add_one(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO seen (n) SELECT COUNT(*) FROM seen")


def seen(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM seen").fetchone()[0])


async def test_a_read_runs_at_once_after_a_write_of_its_turn_and_sees_it(tmp_path: Path) -> None:
    hot = HotPath(tmp_path / "cfai.db")
    hot.ensure(SCHEMA)
    assert hot.run_now(count_and_add) == (0,)
    # The same turn of the loop: a read neither waits for a group nor stops the next write running at once.
    assert hot.run_now(seen, write=False, single=True) == (1,)
    assert await hot.run(seen, write=False) == 1
    assert hot.run_now(count_and_add) is None  # a second write of the turn still joins a group
    both = asyncio.gather(hot.run(count_and_add), hot.run(count_and_add))
    await asyncio.sleep(0)  # both ran in the next turn: the first at once, the second queued for the turn's end
    assert hot.run_now(seen, write=False, single=True) is None  # a read waits behind a write of this process
    assert await both == [1, 2]
    hot.close()


async def test_a_single_statement_runs_alone_without_a_transaction_and_waits_for_the_lock(tmp_path: Path) -> None:
    db = tmp_path / "cfai.db"
    hot = HotPath(db)
    hot.ensure(SCHEMA)
    statements: list[str] = []
    assert hot.run_now(add_one, single=True) == (None,)
    assert hot.connections.loop_conn is not None
    hot.connections.loop_conn.set_trace_callback(statements.append)
    await asyncio.sleep(0)
    assert hot.run_now(add_one, single=True) == (None,)
    assert statements == ["INSERT INTO seen (n) SELECT COUNT(*) FROM seen"]  # no BEGIN, no COMMIT
    other = sqlite3.connect(db, isolation_level=None)  # another worker, in the middle of its write
    other.execute("BEGIN IMMEDIATE")
    await asyncio.sleep(0)
    assert hot.run_now(add_one, single=True) is None  # nothing written, nothing waited for
    asyncio.get_running_loop().call_later(0.2, other.execute, "COMMIT")
    await hot.run(add_one, single=True)  # waits in the thread, in a transaction of its own
    other.close()
    assert sorted(row[0] for row in sqlite3.connect(db).execute("SELECT n FROM seen")) == [0, 1, 2]
    hot.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
async def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    hot = HotPath(tmp_path / "cfai.db")
    hot.ensure(SCHEMA)
    assert await hot.run(count_and_add) == 0
    parent_conn = hot.connections.loop_conn
    pid = os.fork()
    if pid == 0:  # the child: its parent's connection is forgotten, never used nor closed
        os._exit(0 if hot.connections.loop_conn is None and hot._stepping == set() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert hot.connections.loop_conn is parent_conn  # the parent's is its own still
    await asyncio.sleep(0)
    assert await hot.run(count_and_add) == 1
    hot.close()


async def test_a_deferred_write_rides_on_the_next_write_or_commits_alone_within_its_hold(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "cfai.db"
    hot = HotPath(db, hold=0.05)
    hot.ensure(SCHEMA)
    other = sqlite3.connect(db, isolation_level=None)  # another worker, or `cfai keys`
    assert hot.run_now(seen, write=False) == (0,)
    assert hot.connections.loop_conn is not None
    statements: list[str] = []
    hot.connections.loop_conn.set_trace_callback(statements.append)
    hot.defer(add_one)
    assert seen(other) == 0  # held: no commit of its own...
    assert await hot.run(count_and_add) == 1  # ... it rides on this process's next write, ahead of it
    assert statements == ["BEGIN IMMEDIATE", "INSERT INTO seen (n) SELECT COUNT(*) FROM seen",
                          "SELECT COUNT(*) FROM seen", "INSERT INTO seen (n) VALUES (1)", "COMMIT"]
    assert seen(other) == 2  # both in one commit
    hot.defer(add_one)
    await asyncio.sleep(0.1)  # no write came within the hold: it committed alone on its timer
    assert seen(other) == 3
    other.execute("BEGIN IMMEDIATE")  # the lock held elsewhere: it goes to the thread ahead of the write it rode on
    await asyncio.sleep(0)
    hot.defer(add_one)
    asyncio.get_running_loop().call_later(0.15, other.execute, "COMMIT")
    assert await hot.run(count_and_add) == 4
    hot.defer(add_one)
    hot.defer(add_one)  # two held: both ride on the next write, ahead of it
    assert await hot.run(count_and_add) == 7
    await asyncio.sleep(0)
    hot.defer(broken)  # a bug in a deferred piece: rolled back alone, a word logged, the write it rode on kept
    assert await hot.run(count_and_add) == 8
    assert "was not written: a bug in one piece" in caplog.text
    hot.defer(add_one)
    hot.close()  # what is still deferred commits at the close
    assert seen(other) == 10
    other.close()


def counted_per_item(calls: list[list[int]]) -> Callable[[sqlite3.Connection, str, list[int]], list[tuple[bool, Any]]]:
    """A group's work: one COUNT for all its items, then each item's row; an item of 0 is a bug, failing alone."""

    def work(conn: sqlite3.Connection, key: str, items: list[int]) -> list[tuple[bool, Any]]:
        calls.append(list(items))
        (n,) = conn.execute("SELECT COUNT(*) FROM seen").fetchone()
        outcomes: list[tuple[bool, Any]] = []
        for item in items:
            if item == 0:
                outcomes.append((False, ValueError("a bug in one item")))
                continue
            conn.execute("INSERT INTO seen (n) VALUES (?)", (item,))
            outcomes.append((True, (key, item, n)))
            n += 1
        return outcomes

    return work


async def test_a_ticks_items_under_one_key_run_as_one_piece_in_the_place_of_the_first(tmp_path: Path) -> None:
    db = tmp_path / "cfai.db"
    hot = HotPath(db)
    hot.ensure(SCHEMA)
    calls: list[list[int]] = []
    work = counted_per_item(calls)
    results = await asyncio.gather(
        hot.run_grouped("a", 1, work),  # the tick's first piece: alone, at once
        hot.run(count_and_add), hot.run_grouped("a", 2, work), hot.run_grouped("b", 3, work),
        hot.run(count_and_add), hot.run_grouped("a", 0, work), hot.run_grouped("a", 4, work),
        return_exceptions=True)
    assert calls == [[1], [2, 0, 4], [3]]
    # the group of "a" ran where its first item stood: after the first count_and_add, before "b" and the second
    assert results[0] == ("a", 1, 0) and results[1] == 1 and results[2] == ("a", 2, 2)
    assert results[3] == ("b", 3, 4) and results[4] == 5 and results[6] == ("a", 4, 3)
    assert isinstance(results[5], ValueError)  # one item's failure is its own
    # a waiter cancelled while its group waits: the others still get theirs, its row is written all the same
    first = asyncio.ensure_future(hot.run(count_and_add))
    one, two = (asyncio.ensure_future(hot.run_grouped("a", n, work)) for n in (8, 9))
    await asyncio.sleep(0)
    one.cancel()
    assert await two == ("a", 9, 8) and await first == 6
    assert one.cancelled() and calls[-1] == [8, 9]
    assert sorted(row[0] for row in sqlite3.connect(db).execute("SELECT n FROM seen")) == [1, 1, 2, 3, 4, 5, 6, 8, 9]
    hot.close()


async def test_a_group_alone_whose_work_fails_raises_what_it_raised(tmp_path: Path) -> None:
    db = tmp_path / "cfai.db"
    hot = HotPath(db)
    hot.ensure(SCHEMA)

    def failing(conn: sqlite3.Connection, key: str, items: list[int]) -> list[tuple[bool, Any]]:
        conn.execute("INSERT INTO seen (n) VALUES (1)")
        raise ValueError("a bug in the group's work")

    with pytest.raises(ValueError, match="a bug in the group's work"):
        await hot.run_grouped("a", 1, failing)  # the tick's first piece, alone, at once
    assert await hot.run(count_and_add) == 0  # its row rolled back
    hot.close()


async def test_a_group_waits_for_a_lock_held_elsewhere_off_the_loop(tmp_path: Path) -> None:
    db = tmp_path / "cfai.db"
    hot = HotPath(db)
    hot.ensure(SCHEMA)
    calls: list[list[int]] = []
    other = sqlite3.connect(db, isolation_level=None)  # another worker, in the middle of its write
    other.execute("BEGIN IMMEDIATE")
    asyncio.get_running_loop().call_later(0.2, other.execute, "COMMIT")
    work = counted_per_item(calls)
    assert await asyncio.gather(*(hot.run_grouped("a", n, work) for n in (1, 2, 3))) == [
        ("a", 1, 0), ("a", 2, 1), ("a", 3, 2)]
    assert calls == [[1], [2, 3]]  # the first alone to the thread, the others as one group behind it
    other.close()
    hot.close()
