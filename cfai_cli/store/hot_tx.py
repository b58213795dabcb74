"""One connection's transactions for store.hot: a piece of work alone, deferred writes carried ahead of one, a batch
of them in one transaction; and the WAL's checkpoint.

Imports stdlib and store.windows (each transaction's end is told to the connection's rate-limit windows). The
connections never wait for a lock (busy timeout 0): a write lock held by another connection is `Busy` at once, with
nothing written, and store.hot chooses how to wait (off the event loop). A piece that raises something other than a
SQLite error fails alone: its writes are rolled back and the others of its batch run again without it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from cfai_cli.store import windows

Work = Callable[[sqlite3.Connection], Any]
Outcome = tuple[bool, Any]  # (True, the result) or (False, the exception to raise)
GroupWork = Callable[[sqlite3.Connection, Any, list[Any]], Any]  # run_grouped's returns each item's Outcome


class Group:
    """The items one iteration of the loop submitted under one key (store.hot's `run_grouped`), one piece of its
    batch: `work(conn, key, items)` runs once for all of them, returning each item's outcome in order, and each
    item's waiter (a future of its own: a cancelled request cancels only its own) is given its outcome."""

    __slots__ = ("futures", "items", "key", "work")

    def __init__(self, key: Hashable, work: GroupWork) -> None:
        self.key, self.work = key, work
        self.items: list[Any] = []
        self.futures: list[asyncio.Future[Any]] = []

    def __call__(self, conn: sqlite3.Connection) -> Any:
        return self.work(conn, self.key, self.items)

    def deliver(self, outcome: Outcome | BaseException) -> None:
        """Each item's outcome to its waiter (the piece's failure, or a SQLite error, to every one of them)."""
        failure = outcome if isinstance(outcome, BaseException) else None if outcome[0] else outcome[1]
        for index, future in enumerate(self.futures):
            if future.done():  # its request was cancelled: what it wrote stays written
                continue
            if failure is not None:
                future.set_exception(failure)
                continue
            ok, result = outcome[1][index]  # type: ignore[index]
            if ok:
                future.set_result(result)
            else:
                future.set_exception(result)


Piece = tuple[Work, "asyncio.Future[Any] | Group | None", bool]  # the work, its waiter(s), whether it writes
log = logging.getLogger("cfai.store")


class Busy(Exception):
    """SQLite's write lock is held by another connection right now."""


def open_connection(path: Path) -> windows.HotConnection:
    """A connection that never waits for a lock: SQLITE_BUSY at once (the callers choose how to wait)."""
    conn: windows.HotConnection = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False,
                                                  factory=windows.HotConnection)
    try:
        conn.execute("PRAGMA busy_timeout = 0")
        conn.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def checkpoint(conn: sqlite3.Connection) -> None:
    """The WAL copied into the database (store.hot's thread, every CHECKPOINT_EVERY commits made on the loop)."""
    # PASSIVE copies the WAL into the database beside the writers; RESTART then waits (50 ms at most) for the
    # writer of the moment, copies what came since and has the next commit write the WAL from its start. PASSIVE
    # alone, beside a steady stream of commits, never finds the WAL all copied: the file grew by a page a request.
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    conn.execute("PRAGMA busy_timeout = 50")
    try:
        conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
    finally:
        conn.execute("PRAGMA busy_timeout = 0")


def locked(exc: sqlite3.Error) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY


def abandon(conn: windows.HotConnection, exc: BaseException) -> None:
    """Roll back what a failed transaction wrote; a write lock held elsewhere becomes Busy (nothing written)."""
    windows.abandoned(conn)
    if conn.in_transaction:
        conn.statements.execute("ROLLBACK")
    if isinstance(exc, sqlite3.Error) and locked(exc):
        raise Busy from None


def run_one(conn: windows.HotConnection, work: Work, write: bool, single: bool = False) -> tuple[bool, Any]:
    """`work` alone in a transaction: (True, result) or (False, the exception it raised, its writes rolled back).

    The usual case (no other piece waiting), without `run_batch`'s lists: a quarter of the hot path's own Python.
    `single`: the work is one statement, which SQLite runs in a transaction of its own (a writing statement takes
    the write lock before it reads, as BEGIN IMMEDIATE does, and with no busy timeout fails at once if it is held):
    no BEGIN and COMMIT around it, ~11 k of a token record's ~48 k instructions (bench/keys_instructions.py)."""
    if single:
        try:
            result = work(conn)
        except sqlite3.Error as exc:
            abandon(conn, exc)
            raise
        except Exception as exc:  # a bug in the piece: only its own request fails (a failed statement wrote nothing)
            return False, exc
        return True, result
    try:
        conn.statements.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            result = work(conn)
        except sqlite3.Error:
            raise
        except Exception as exc:  # a bug in the piece: only its own request fails
            conn.statements.execute("ROLLBACK")
            windows.abandoned(conn)
            return False, exc
        conn.statements.execute("COMMIT")
        conn.checked = False  # windows.committed(conn), inlined: a call less a transaction
        return True, result
    except BaseException as exc:
        abandon(conn, exc)
        raise


def run_carried(conn: windows.HotConnection, carried: list[Work], work: Work
                ) -> tuple[bool, Any] | list[tuple[bool, Any]]:
    """The writes `carried` (store.hot's deferred ones, nobody waits for them) and then `work`, in one write
    transaction: (True, what `work` returned). The usual case, without run_batch's lists; if a piece raises
    something other than a SQLite error, all of it is rolled back and runs again through `run_batch` (each piece
    failing alone), and then each piece's outcome is returned, `work`'s last."""
    try:
        conn.statements.execute("BEGIN IMMEDIATE")
        try:
            for each in carried:
                each(conn)
            result = work(conn)
        except sqlite3.Error:
            raise
        except Exception:
            conn.statements.execute("ROLLBACK")
            windows.abandoned(conn)
            return run_batch(conn, [*((each, None, True) for each in carried), (work, None, True)])
        conn.statements.execute("COMMIT")
        conn.checked = False  # windows.committed(conn), inlined: a call less a transaction
        return True, result
    except BaseException as exc:
        abandon(conn, exc)
        raise


def run_batch(conn: windows.HotConnection, batch: list[Piece]) -> list[tuple[bool, Any]]:
    """Every piece of `batch` in one write transaction: (True, result) or (False, the exception it raised).

    A piece that raises is left out and the others run again without it (what it wrote is rolled back).
    A write lock held elsewhere raises Busy at once (nothing is written)."""
    todo = list(range(len(batch)))
    outcomes: list[tuple[bool, Any]] = [(False, None)] * len(batch)
    # Only reads: no write lock to take and nothing to write at the commit.
    begin = "BEGIN IMMEDIATE" if any(write for _, _, write in batch) else "BEGIN"
    while True:
        failed = None
        try:
            conn.statements.execute(begin)
            for index in todo:
                try:
                    outcomes[index] = (True, batch[index][0](conn))
                except sqlite3.Error:
                    raise
                except Exception as exc:  # a bug in one piece: only its own request fails
                    outcomes[index] = (False, exc)
                    failed = index
                    break
        except BaseException as exc:
            abandon(conn, exc)
            raise
        if failed is None:
            try:
                conn.statements.execute("COMMIT")
            except BaseException:
                windows.abandoned(conn)
                raise
            windows.committed(conn)
            return outcomes
        conn.statements.execute("ROLLBACK")
        windows.abandoned(conn)
        todo.remove(failed)


def deliver(batch: list[Piece], outcomes: list[Outcome] | BaseException) -> None:
    """Each piece's outcome to its waiter (on its loop); a failed write nobody waits for is logged."""
    for index, (_, future, _) in enumerate(batch):
        if isinstance(future, Group):
            future.deliver(outcomes if isinstance(outcomes, BaseException) else outcomes[index])
            continue
        if future is None:  # deferred, not awaited: only a failure is worth a word
            failure = outcomes if isinstance(outcomes, BaseException) else (
                None if outcomes[index][0] else outcomes[index][1])
            if failure is not None:
                log.error("a record on the database's hot path was not written: %s", failure)
            continue
        if future.done():  # its request was cancelled: what it wrote stays written
            continue
        if isinstance(outcomes, BaseException):
            future.set_exception(outcomes)
        elif outcomes[index][0]:
            future.set_result(outcomes[index][1])
        else:
            future.set_exception(outcomes[index][1])
