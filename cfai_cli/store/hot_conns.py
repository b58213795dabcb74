"""store.hot's two connections to one database: the event loop's, which never waits (a write lock held elsewhere is
None at once), and a worker thread's, which waits its turn and checkpoints the WAL.

Imports stdlib, errors and store.hot_tx. A connection that fails (anything but a lock held elsewhere) is closed and
opened again on next use; its state goes with it (store.windows' rate-limit windows, for one). store.hot decides
which runs what; this module holds them, their locks and what each does when SQLite says no.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cfai_cli.errors import ConfigError
from cfai_cli.store import hot_tx
from cfai_cli.store.hot_tx import Busy, Piece, locked, open_connection, run_batch
from cfai_cli.store.windows import HotConnection

R = TypeVar("R")
WAIT = 30.0  # seconds a piece waits for another connection's write lock before its request fails


class Connections:
    """The loop's connection (`inline`, `lend`) and the thread's (`blocking`, `checkpoint`), each behind its lock
    (a second event loop in another thread, in tests, takes the loop's connection in turn)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.loop_lock = threading.Lock()
        self.thread_lock = threading.Lock()
        self.loop_conn: HotConnection | None = None
        self.thread_conn: HotConnection | None = None

    def _loop_connection(self) -> HotConnection:
        conn = self.loop_conn
        if conn is None:
            conn = self.loop_conn = open_connection(self.path)
            conn.execute("PRAGMA wal_autocheckpoint = 0")  # checkpoint(), in a thread
        return conn

    def lend(self) -> sqlite3.Connection | None:
        """The loop's connection between two transactions, for reads of the caller's own (None while another
        thread has it, or it cannot be opened); `give_back()` after. For store.keys' KeyCache: a connection's
        `PRAGMA data_version` does not move for its own commits, so the rate limits' and budgets' commits made
        here (one to three a request, never to api_keys) no longer make it read the keys' epoch again, its page
        cache dropped and read back (bench/keys_syscalls.py: ~15 µs of CPU and two preads a limited request)."""
        if not self.loop_lock.acquire(blocking=False):
            return None
        try:
            return self._loop_connection()
        except sqlite3.Error:
            self._drop("loop_conn")
            self.loop_lock.release()
            return None

    def give_back(self) -> None:
        self.loop_lock.release()

    def inline(self, run: Callable[..., R], *args: Any) -> R | None:
        """`run(conn, *args)` (`run_batch` or `run_one`) on the loop's connection; None if another writer holds it."""
        if not self.loop_lock.acquire(False):  # (not blocking)
            return None
        try:
            try:
                conn = self.loop_conn or self._loop_connection()
                return run(conn, *args)
            except Busy:
                return None
            except sqlite3.Error as exc:
                self._drop("loop_conn")
                if locked(exc):  # even its first read of the schema waits for no one
                    return None
                raise ConfigError(f"Cannot use the database {self.path}: {exc}") from None
        finally:
            self.loop_lock.release()

    def blocking(self, batch: list[Piece]) -> list[tuple[bool, Any]]:
        """`batch` in one transaction on the thread's connection, trying again every 0.1–2 ms while another
        connection writes (SQLite's own busy handler sleeps 1, 2, 5 ... 100 ms: a queue of requests behind it)."""
        deadline, pause = time.monotonic() + WAIT, 0.0001
        with self.thread_lock:
            while True:
                try:
                    if self.thread_conn is None:
                        self.thread_conn = open_connection(self.path)
                    return run_batch(self.thread_conn, batch)
                except (Busy, sqlite3.Error) as exc:
                    if not isinstance(exc, Busy):
                        self._drop("thread_conn")
                    if not (isinstance(exc, Busy) or locked(exc)) or time.monotonic() > deadline:
                        raise ConfigError(f"Cannot use the database {self.path}: "
                                          f"{'database is locked' if isinstance(exc, Busy) else exc}") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.002)

    def checkpoint(self) -> None:
        """The WAL copied into the database, on the thread's connection (in a worker thread)."""
        try:
            with self.thread_lock:
                if self.thread_conn is None:
                    self.thread_conn = open_connection(self.path)
                hot_tx.checkpoint(self.thread_conn)
        except sqlite3.Error:
            pass  # the next one, or another connection's commit, checkpoints

    def close(self) -> None:
        for name, lock in (("loop_conn", self.loop_lock), ("thread_conn", self.thread_lock)):
            with lock:
                self._drop(name)

    def _drop(self, name: str) -> None:
        conn: HotConnection | None = getattr(self, name)
        if conn is not None:  # a connection that failed mid-transaction is not reused
            conn.close()
            setattr(self, name, None)
