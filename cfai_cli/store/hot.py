"""Short SQLite transactions on every request's path (rate limits, budget holds), group-committed per event-loop tick.

Imports stdlib and store.db. Work submitted in one tick of the event loop runs in one write transaction (BEGIN
IMMEDIATE, so it is still serialised with every other process's), each piece seeing the writes of the pieces
before it: exact, and one commit for all of them. The transaction runs on the event loop itself when SQLite's
write lock is free this instant (a connection with no busy timeout), else in a worker thread that waits its turn.
Measured on the 2-core bench machine (bench/run.py, docs/performance.md): an admission's transaction costs ~30 µs
of CPU alone and ~15 µs in batches of four, where a thread hop costs more than the work (~60 µs and a wake-up of
the loop) and a new connection with a full fsync per commit cost 2–14 ms. The loop's connection never
checkpoints the WAL itself (a checkpoint writes and fsyncs megabytes): a worker thread does, every
`CHECKPOINT_EVERY` commits. Commits are not flushed to disk one by one (WAL's synchronous=NORMAL: durable when a
process dies, the last commits may be lost if the machine does): an fsync would cost more than the request.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cfai_cli.errors import ConfigError
from cfai_cli.store.db import connect

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], Any]
Piece = tuple[Work, "asyncio.Future[Any] | None", bool]  # the work, its waiter, whether it writes
CHECKPOINT_EVERY = 500  # commits made on the loop between two checkpoints (a page or two each)


class _Busy(Exception):
    """SQLite's write lock is held by another connection right now."""


def _open(path: Path, *, wait: float) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=wait, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
        conn.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def _locked(exc: sqlite3.Error) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY


def _run(conn: sqlite3.Connection, batch: list[Piece], *,
         wait: bool) -> list[tuple[bool, Any]]:
    """Every piece of `batch` in one write transaction: (True, result) or (False, the exception it raised).

    A piece that raises is left out and the others run again without it (what it wrote is rolled back).
    Without `wait`, a write lock held elsewhere raises _Busy at once (nothing is written)."""
    todo = list(range(len(batch)))
    outcomes: list[tuple[bool, Any]] = [(False, None)] * len(batch)
    # Only reads: no write lock to take and nothing to write at the commit.
    begin = "BEGIN IMMEDIATE" if any(write for _, _, write in batch) else "BEGIN"
    while True:
        failed = None
        try:
            conn.execute(begin)
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
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if not wait and isinstance(exc, sqlite3.Error) and _locked(exc):
                raise _Busy from None
            raise
        if failed is None:
            conn.execute("COMMIT")
            return outcomes
        conn.execute("ROLLBACK")
        todo.remove(failed)


class HotPath:
    """One database's hot-path transactions in one process: `await run(work)` or, off the loop, `call(work)`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pending: dict[asyncio.AbstractEventLoop, list[Piece]] = {}
        self._stepping: set[asyncio.AbstractEventLoop] = set()  # loops whose iteration has run a piece at once
        self._loop_lock = threading.Lock()  # the loop's connection (a second loop in another thread: tests)
        self._thread_lock = threading.Lock()
        self._loop_conn: sqlite3.Connection | None = None
        self._thread_conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._commits = 0
        self._schemas: set[str] = set()

    def ensure(self, schema: str, migrate: Callable[[sqlite3.Connection], None] | None = None) -> None:
        """The file (0600), WAL and `schema` in place, once per process (as every connection has them)."""
        if schema not in self._schemas:
            with connect(self.path, schema, migrate=migrate):
                pass
            self._schemas.add(schema)

    def _fresh(self) -> None:
        if self._pid != os.getpid():  # a forked child: its parent's connections are not its own
            self._loop_conn = self._thread_conn = None
            self._pending.clear()
            self._stepping.clear()
            self._pid = os.getpid()

    async def run(self, work: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        """`work(conn)` in a transaction, and what it returned (`write=False`: it only reads; a transaction of
        such pieces takes no write lock).

        The first piece of an iteration of the loop runs at once, without suspending its task (a lone request
        waits for no tick); the pieces that follow in the same iteration (concurrent requests) wait for its end
        and share one transaction."""
        loop = asyncio.get_running_loop()
        batch = self._pending.get(loop)
        if batch is None and loop not in self._stepping:
            self._stepping.add(loop)
            loop.call_soon(self._stepping.discard, loop)
            single: list[Piece] = [(work, None, write)]
            outcomes = self._inline(single)
            if outcomes is None:  # another writer holds the lock: wait for it in a thread, not on the loop
                outcomes = await loop.run_in_executor(None, self._blocking, single)
            else:
                self._after_commit(loop)
            ((ok, result),) = outcomes
            if not ok:
                raise result
            return result  # type: ignore[no-any-return]
        future: asyncio.Future[T] = loop.create_future()
        if batch is None:
            self._pending[loop] = batch = []
            loop.call_soon(self._flush, loop)
        batch.append((work, future, write))
        return await future

    def call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(conn)` in its own write transaction on the calling thread, waiting for the lock (CLI, tests)."""
        ((ok, result),) = self._blocking([(work, None, True)])
        if not ok:
            raise result
        return result  # type: ignore[no-any-return]

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._pending.pop(loop, [])
        if not batch:
            return
        try:
            outcomes = self._inline(batch)
        except Exception as exc:  # handed to every waiter, as the thread's would be
            self._deliver(batch, exc)
            return
        if outcomes is None:  # another writer holds the lock: wait for it in a thread, not on the loop
            waiting = loop.run_in_executor(None, self._blocking, batch)
            waiting.add_done_callback(lambda done: self._deliver(batch, done.exception() or done.result()))
            return
        self._deliver(batch, outcomes)
        self._after_commit(loop)

    def _after_commit(self, loop: asyncio.AbstractEventLoop) -> None:
        self._commits += 1
        if self._commits >= CHECKPOINT_EVERY:
            self._commits = 0
            loop.run_in_executor(None, self._checkpoint)

    def _inline(self, batch: list[Piece]) -> list[tuple[bool, Any]] | None:
        if not self._loop_lock.acquire(blocking=False):
            return None
        try:
            self._fresh()
            try:
                if self._loop_conn is None:
                    self._loop_conn = _open(self.path, wait=0)
                    self._loop_conn.execute("PRAGMA wal_autocheckpoint = 0")  # self._checkpoint, in a thread
                outcomes = _run(self._loop_conn, batch, wait=False)
            except _Busy:
                return None
            except sqlite3.Error as exc:
                self._drop("_loop_conn")
                if _locked(exc):  # even its first read of the schema waits for no one
                    return None
                raise ConfigError(f"Cannot use the database {self.path}: {exc}") from None
            return outcomes
        finally:
            self._loop_lock.release()

    def _blocking(self, batch: list[Piece]) -> list[tuple[bool, Any]]:
        with self._thread_lock:
            self._fresh()
            if self._thread_conn is None:
                self._thread_conn = _open(self.path, wait=30.0)
            try:
                return _run(self._thread_conn, batch, wait=True)
            except sqlite3.Error as exc:
                self._drop("_thread_conn")
                raise ConfigError(f"Cannot use the database {self.path}: {exc}") from None

    def _drop(self, name: str) -> None:
        conn: sqlite3.Connection | None = getattr(self, name)
        if conn is not None:  # a connection that failed mid-transaction is not reused
            conn.close()
            setattr(self, name, None)

    def _checkpoint(self) -> None:
        try:
            with self._thread_lock:
                self._fresh()
                if self._thread_conn is None:
                    self._thread_conn = _open(self.path, wait=30.0)
                # RESTART: it waits for the writer of the moment (the loop's pieces wait in a thread meanwhile)
                # and the next commit writes the WAL from its start; a PASSIVE one beside a steady stream of
                # commits never finds the WAL all copied, so the file grew by a page a request.
                self._thread_conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        except sqlite3.Error:
            pass  # the next one, or any other connection's commit, checkpoints

    @staticmethod
    def _deliver(batch: list[Piece],
                 outcomes: list[tuple[bool, Any]] | BaseException) -> None:
        for index, (_, future, _) in enumerate(batch):
            if future is None or future.done():  # its request was cancelled: what it wrote stays written
                continue
            if isinstance(outcomes, BaseException):
                future.set_exception(outcomes)
            elif outcomes[index][0]:
                future.set_result(outcomes[index][1])
            else:
                future.set_exception(outcomes[index][1])

    def close(self) -> None:
        for name, lock in (("_loop_conn", self._loop_lock), ("_thread_conn", self._thread_lock)):
            with lock:
                self._drop(name)
