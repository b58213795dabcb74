"""Short SQLite transactions on every request's path (rate limits, budget holds), on the event loop, grouped.

Imports stdlib, store.db, store.hot_tx (how a piece or a batch runs on one connection) and store.hot_conns (the
loop's connection and the thread's). A piece of work runs in a write transaction (BEGIN IMMEDIATE, so it is
serialised with every other process's) on a connection kept open, on the event loop itself when SQLite's write
lock is free this instant (that connection has no busy timeout), else in a worker thread that waits its turn.
The first piece of an iteration of the loop runs at once; the pieces that concurrent requests submit in the same
iteration share one transaction at its end (group commit), each seeing the writes of the pieces before it: exact.
Measured on the 2-core machine of bench/run.py (docs/performance.md, 2026-12-01, loaded by other jobs): a thread
hop alone costs ~95 µs of CPU and 100–300 µs of wall time; a rate-limit admission's whole transaction ~35 µs of
CPU alone and ~18 µs in groups of four; the connection opened per admission with an fsync per commit, which this
replaces, 2–14 ms. The loop's connection never checkpoints the WAL itself (a checkpoint writes and fsyncs
megabytes): a worker thread does, every `CHECKPOINT_EVERY` commits. Commits are not flushed to disk one by one
(WAL's synchronous=NORMAL: durable when a process dies, the last commits may be lost if the machine does).
A piece alone (the usual case) runs without the batch's lists and outcomes, and `run_now` runs one without an
await at all (a caller that would otherwise shield its wait from cancellation skips the shield); a fork resets
the process's connections once (os.register_at_fork) instead of an os.getpid() system call per piece.
`defer` holds a write nobody waits for (`HOLD` at most; lost if the process is killed meanwhile) for the next
write transaction to carry: a TPM key's tokens ride on the next admission (c=1: 14.0 -> 8.2 fcntl a request,
docs/performance.md round 8); `connections.lend` lends the loop's connection between transactions to
store.keys' KeyCache (round 6). `run_grouped` makes one piece of an iteration's items under one key
(a key's concurrent admissions: its windows read once, not once each; docs/performance.md round 9).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

from cfai_cli.store import hot_tx
from cfai_cli.store.db import connect
from cfai_cli.store.hot_conns import Connections
from cfai_cli.store.hot_tx import Group, Piece, Work, deliver, run_batch, run_one

T = TypeVar("T")
CHECKPOINT_EVERY = 500  # commits made on the loop between two checkpoints (a page or two each)
HOLD = 0.010  # seconds a deferred write waits at most for another write transaction of this process to ride on



_LIVE: weakref.WeakSet[HotPath] = weakref.WeakSet()


def _forked() -> None:
    """In a forked child: its parent's connections, locks and queues are not its own (os.getpid() on every piece
    cost a system call; this runs once per fork instead)."""
    for hot in list(_LIVE):
        hot._forget()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork either
    os.register_at_fork(after_in_child=_forked)


class HotPath:
    """One database's hot-path transactions in one process: `await run(work)` or, off the loop, `call(work)`."""

    def __init__(self, path: Path, *, hold: float = HOLD) -> None:
        self.path = path
        self.hold = hold
        self._deferred: dict[asyncio.AbstractEventLoop, list[Work]] = {}  # writes waiting to ride (defer; kept)
        self._armed: set[asyncio.AbstractEventLoop] = set()  # loops with a timer that commits what is deferred
        self._pending: dict[asyncio.AbstractEventLoop, list[Piece]] = {}
        self._groups: dict[asyncio.AbstractEventLoop, dict[Hashable, Group]] = {}  # run_grouped's, in _pending
        self._deferred_groups: dict[asyncio.AbstractEventLoop, dict[Hashable, Group]] = {}  # in _deferred
        self._stepping: set[asyncio.AbstractEventLoop] = set()  # loops whose iteration has run a piece at once
        self.connections = Connections(path)
        self._backlog_lock = threading.Lock()
        self._backlog: list[tuple[asyncio.AbstractEventLoop, list[Piece]]] = []  # pieces waiting for the thread
        self._draining = False  # a thread is working through the backlog
        self._commits = 0
        self._schemas: set[str] = set()
        _LIVE.add(self)

    def ensure(self, schema: str, migrate: Callable[[sqlite3.Connection], None] | None = None) -> None:
        """The file (0600), WAL and `schema` in place, once per process (as every connection has them)."""
        if schema not in self._schemas:
            with connect(self.path, schema, migrate=migrate):
                pass
            self._schemas.add(schema)

    def _forget(self) -> None:
        self.connections = Connections(self.path)  # the parent's: never closed here
        self._pending.clear()
        self._groups.clear()
        self._stepping.clear()
        self._deferred.clear()  # the parent's to commit, not the child's
        self._deferred_groups.clear()
        self._armed.clear()
        self._backlog.clear()
        self._draining = False
        self._backlog_lock = threading.Lock()

    async def run(self, work: Callable[[sqlite3.Connection], T], *, write: bool = True, single: bool = False) -> T:
        """`work(conn)` in a transaction, and what it returned (`write=False`: it only reads; a transaction of
        such pieces takes no write lock; `single`: it runs one statement, see `run_now`).

        The first piece of an iteration of the loop runs at once, without suspending its task (a lone request
        waits for no tick); the pieces that follow in the same iteration (concurrent requests) wait for its end
        and share one transaction. While pieces wait for the lock in the thread, new ones queue behind them."""
        loop = asyncio.get_running_loop()
        batch = self._pending.get(loop)
        if batch is None and not self._draining and (not write or loop not in self._stepping):
            outcome = self._first(loop, work, write, single)
            if outcome is not None:
                return self._result(outcome)  # type: ignore[no-any-return]
            future: asyncio.Future[T] = loop.create_future()  # another writer holds the lock: wait off the loop
            self._to_thread(loop, [(work, future, write)])
            return await future
        future = loop.create_future()
        (batch if batch is not None else self._batch(loop)).append((work, future, write))
        return await future

    def _batch(self, loop: asyncio.AbstractEventLoop) -> list[Piece]:
        """This iteration's batch, new: flushed at its end (a group commit)."""
        batch: list[Piece] = []
        self._pending[loop] = batch
        loop.call_soon(self._flush, loop)
        return batch

    async def run_grouped(self, key: Hashable, item: Any, work: hot_tx.GroupWork) -> Any:
        """`work(conn, key, items)` once for the items submitted under `key` in one iteration of the loop, which
        returns each item's outcome in order ((True, result) or (False, what to raise)); this item's result.
        Alone (the first piece of its iteration), it runs at once as `run` does; otherwise the group is one piece
        of that iteration's group commit, in the place of its first item (the others are concurrent with the
        pieces between them: each sees the writes of the pieces before the group, and of the items before it)."""
        loop = asyncio.get_running_loop()
        batch = self._pending.get(loop)
        future: asyncio.Future[Any]
        if batch is None and not self._draining and loop not in self._stepping:
            outcome = self._first(loop, lambda conn: work(conn, key, [item]), True)
            if outcome is not None:  # (the piece's outcome, then the item's: _result twice, inlined)
                ok, result = outcome
                if ok:
                    ok, result = result[0]
                if not ok:
                    raise result
                return result
            group = Group(key, work)  # another writer holds the lock: a group of one, off the loop
            group.items.append(item)
            group.futures.append(future := loop.create_future())
            self._to_thread(loop, [(group, group, True)])
            return await future
        if batch is None:
            batch = self._batch(loop)
        groups = self._groups.get(loop)
        if groups is None:
            groups = self._groups[loop] = {}
        group = groups.get(key)  # type: ignore[assignment]
        if group is None:
            group = groups[key] = Group(key, work)
            batch.append((group, group, True))
        group.items.append(item)
        group.futures.append(future := loop.create_future())
        return await future

    def run_now(self, work: Callable[[sqlite3.Connection], T], *, write: bool = True,
                single: bool = False) -> tuple[T] | None:
        """`work(conn)` at once, as `run` does when nothing waits and the write lock is free: (what it returned,)
        (what it raised is raised); None when it has to wait its turn, and then the caller awaits `run(work)`.
        For a caller that must not be interrupted once it waits (server.observe's charges at a request's end):
        it pays for a shield from cancellation only in that case. `single`: `work` runs one statement, atomic
        alone (run at once, it needs no BEGIN and COMMIT; waiting, it joins the others' transaction as any piece)."""
        loop = asyncio.get_running_loop()
        if loop in self._pending or self._draining or (write and loop in self._stepping):
            return None
        outcome = self._first(loop, work, write, single)
        return None if outcome is None else (self._result(outcome),)

    def defer(self, work: Callable[[sqlite3.Connection], Any]) -> None:
        """`work(conn)` (a write nobody waits for) in this loop's next write transaction, ahead of its pieces, or
        alone on a timer `hold` seconds after at most (or at `close()`). Every later write of this process sees it;
        other connections (workers, `cfai keys`) when it commits. A failure is logged."""
        self._defer(asyncio.get_running_loop(), work)

    def defer_grouped(self, key: Hashable, item: Any, work: hot_tx.GroupWork) -> None:
        """`defer` of `item` under `key`: the items deferred under one key until a transaction takes them are one
        work, `work(conn, key, items)`, in the place of the first (a key's token records at c=32: one read of its
        newest total for all of them, not one each)."""
        loop = asyncio.get_running_loop()
        groups = self._deferred_groups.get(loop)
        if groups is None:
            groups = self._deferred_groups[loop] = {}
        group = groups.get(key)
        if group is None:
            group = groups[key] = Group(key, work)
            self._defer(loop, group)
        group.items.append(item)

    def _defer(self, loop: asyncio.AbstractEventLoop, work: Work) -> None:
        works = self._deferred.get(loop)
        if works is None:  # one list a loop, emptied and kept
            works = self._deferred[loop] = []
        works.append(work)
        if loop not in self._armed:  # one timer at a time: it may commit a write early, never late
            self._armed.add(loop)
            loop.call_later(self.hold, self._release, loop)

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        """The timer: what is still deferred commits now (at once, or behind what waits in the thread)."""
        self._armed.discard(loop)
        if self._deferred.get(loop):
            self._pending.setdefault(loop, [])
            self._flush(loop)

    def _first(self, loop: asyncio.AbstractEventLoop, work: Work, write: bool, single: bool = False
               ) -> tuple[bool, Any] | None:
        """The first piece of this iteration of the loop, alone and at once; None if another writer holds the lock.

        A piece that only reads runs at once whenever no piece of this process waits (so it sees every write
        made before it), even after another this iteration: it commits nothing, so it gains nothing from a group,
        and it leaves the iteration's first write to run at once too (a budget's door check and its hold, one
        after the other: the hold went through a batch, a future and another turn of the loop, ~50 k instructions)."""
        if not write:
            return self.connections.inline(run_one, work, write, single)
        self._stepping.add(loop)
        loop.call_soon(self._stepping.discard, loop)
        works = self._deferred.get(loop)
        outcome = self._carry(loop, works, work) if works else self.connections.inline(run_one, work, write, single)
        if outcome is not None:
            self._commits += 1
            if self._commits >= CHECKPOINT_EVERY:
                self._checkpoint_soon(loop)
        return outcome

    def _carry(self, loop: asyncio.AbstractEventLoop, works: list[Work], work: Work) -> tuple[bool, Any] | None:
        """`work` behind the deferred writes in one transaction (None: the lock is held elsewhere, they went first)."""
        try:
            outcome = self.connections.inline(hot_tx.run_carried, works, work)
        except Exception as exc:
            deliver(self._take(loop), exc)  # logged: the database cannot be used
            raise
        if outcome is None:
            self._to_thread(loop, self._take(loop))
            return None
        if isinstance(outcome, list):  # a piece raised: each ran alone, a deferred one's failure is logged
            deliver(self._take(loop), outcome)
            return outcome[-1]
        works.clear()
        self._deferred_groups.pop(loop, None)
        return outcome

    def _take(self, loop: asyncio.AbstractEventLoop) -> list[Piece]:  # the deferred writes, as a batch's pieces
        works = self._deferred.get(loop)
        pieces: list[Piece] = [(each, None, True) for each in works] if works else []
        if works:
            works.clear()
        self._deferred_groups.pop(loop, None)  # taken: what is deferred now goes to new groups
        return pieces

    @staticmethod
    def _result(outcome: tuple[bool, Any]) -> Any:
        ok, result = outcome
        if not ok:
            raise result
        return result

    def call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(conn)` in its own write transaction on the calling thread, waiting for the lock (CLI, tests)."""
        ((ok, result),) = self.connections.blocking([(work, None, True)])
        if not ok:
            raise result
        return result  # type: ignore[no-any-return]

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._pending.pop(loop, [])
        self._groups.pop(loop, None)  # closed: what comes now goes to a new batch
        deferred = self._take(loop)
        if deferred:  # older than this turn's pieces: ahead of them
            batch = deferred + batch
        if not batch:
            return
        if self._draining:  # behind the pieces already waiting for the lock, in their order
            self._to_thread(loop, batch)
            return
        try:
            outcomes = self.connections.inline(run_batch, batch)
        except Exception as exc:  # handed to every waiter, as the thread's would be
            deliver(batch, exc)
            return
        if outcomes is None:  # another writer holds the lock: wait for it in a thread, not on the loop
            self._to_thread(loop, batch)
            return
        deliver(batch, outcomes)
        self._commits += 1
        if self._commits >= CHECKPOINT_EVERY:
            self._checkpoint_soon(loop)

    def _checkpoint_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        self._commits = 0
        loop.run_in_executor(None, self.connections.checkpoint)

    def _to_thread(self, loop: asyncio.AbstractEventLoop, batch: list[Piece]) -> None:
        with self._backlog_lock:
            self._backlog.append((loop, batch))
            if self._draining:
                return
            self._draining = True
        loop.run_in_executor(None, self._drain)

    def _drain(self) -> None:
        """In a worker thread: what waits for the lock, all of it in one transaction, until nothing waits (so
        a stall behind another writer ends in one commit, not one per request)."""
        while True:
            with self._backlog_lock:
                waiting, self._backlog = self._backlog, []
                if not waiting:
                    self._draining = False
                    return
            outcomes: list[tuple[bool, Any]] | BaseException
            try:
                outcomes = self.connections.blocking([piece for _, batch in waiting for piece in batch])
            except Exception as exc:
                outcomes = exc
            start = 0
            for loop, batch in waiting:
                part = outcomes if isinstance(outcomes, BaseException) else outcomes[start:start + len(batch)]
                start += len(batch)
                with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits any more
                    loop.call_soon_threadsafe(deliver, batch, part)

    def close(self) -> None:
        """The deferred writes committed (waiting for the lock as `call` does), then the connections closed."""
        deferred = [piece for loop in list(self._deferred) for piece in self._take(loop)]
        if deferred:
            try:
                deliver(deferred, self.connections.blocking(deferred))
            except Exception as exc:
                deliver(deferred, exc)
        self.connections.close()
