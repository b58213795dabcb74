"""The usage log's writer: rows queued by each request's end (server.observe) and by batches, written in batches
off the request path, kept while the store is away, and flushed on shutdown.

Imports anyio, store.usage and errors only (the CLI's batch runner uses it without the server)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import anyio

from cfai_cli.errors import StoreUnavailable
from cfai_cli.store.usage import UsageLog, UsageRow

log = logging.getLogger("cfai.server")


class UsageRecorder:
    """Queues usage rows and writes them in batches every `interval` seconds (and at shutdown).

    A batch the store cannot take for now (PostgreSQL away) is kept and tried again with the next
    one (a batch it refuses, bad data, is dropped and logged: it would block every later row), so
    `cfai usage` sees every request served during an outage once the store is back. The queue is bounded: past
    `limit` rows the oldest are dropped, counted in `lost` and logged (a row is ~0.5 KB: the default bound is
    ~25 MB, about eight minutes at 100 requests a second)."""

    LIMIT = 50_000
    STOP_TRIES = 3  # writes tried at shutdown, a second apart

    def __init__(self, usage: UsageLog, *, interval: float = 1.0, limit: int = LIMIT) -> None:
        self.usage = usage
        self.interval = interval
        self.limit = limit
        self._rows: list[UsageRow] = []
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        # Neurons per account in the rows not yet in the database (queued, or being written), for the daily
        # caps (server.meter); `written` counts the batches written, so a cached reading knows it is stale.
        self.pending: dict[str, float] = {}
        self.writing: dict[str, float] = {}
        self.written = 0
        self.lost = 0  # rows dropped because the store stayed away past `limit` rows
        self.failing = False  # the last write failed: its rows are waiting in the queue
        # Other writes kept while the store was away, tried again on each tick (the budgets' durable settles).
        self.retries: list[Callable[[], Awaitable[object]]] = []

    def add(self, row: UsageRow) -> None:
        self._rows.append(row)
        if row.account is not None and row.neurons:
            self.pending[row.account] = self.pending.get(row.account, 0.0) + row.neurons
        if len(self._rows) > self.limit:
            self._drop(len(self._rows) - self.limit)

    def _drop(self, count: int) -> None:
        dropped, self._rows = self._rows[:count], self._rows[count:]
        for row in dropped:  # their neurons leave the meter's unwritten totals with them
            if row.account is not None and row.neurons:
                left = self.pending.get(row.account, 0.0) - row.neurons
                self.pending[row.account] = max(left, 0.0)
        self.lost += count
        log.error("usage log: the store has not taken rows for a while; dropped the %d oldest queued rows "
                  "(%d lost so far, %d kept)", count, self.lost, len(self._rows))

    async def flush(self) -> bool:
        """Write the queued rows; False if the store refused them (they stay queued, oldest first)."""
        rows, self._rows = self._rows, []
        self.writing, self.pending = self.pending, {}
        ok = True
        if rows:
            try:
                await anyio.to_thread.run_sync(self.usage.write, rows)
            except Exception as exc:  # a full disk or a database away must not take the proxy down
                if not _passing(exc):  # rows the database refuses (bad data) would block every later row
                    self.lost += len(rows)
                    log.error("could not write %d usage rows (dropped: %s)", len(rows), exc)
                    self.writing, self.failing = {}, False
                    self.written += 1
                    return True
                ok = False
                if not self.failing:
                    log.error("could not write %d usage rows (kept, tried again every %g s): %s", len(rows),
                              self.interval, exc)
                self._rows = rows + self._rows
                for account, neurons in self.writing.items():
                    self.pending[account] = self.pending.get(account, 0.0) + neurons
                if len(self._rows) > self.limit:
                    self._drop(len(self._rows) - self.limit)
            else:
                if self.failing:
                    log.warning("usage log: the store took the %d queued rows again", len(rows))
        self.failing = not ok
        self.writing = {}
        self.written += 1
        return ok

    async def _loop(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            waiter = asyncio.ensure_future(stopping.wait())
            try:
                await asyncio.wait({waiter}, timeout=self.interval)
            finally:
                waiter.cancel()
            if stopping.is_set():
                return
            await self.flush()
            await self._retry()

    async def _retry(self) -> bool:
        """Each kept-writes retry once; False when one still has writes left (it said False, or failed)."""
        done = True
        for retry in self.retries:
            try:
                done = await retry() is not False and done
            except Exception as exc:  # its own losses are its own to log; the loop must go on
                done = False
                log.error("retrying kept writes failed: %s", exc)
        return done

    def start(self) -> None:
        self._stopping = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop(self._stopping))

    async def stop(self) -> None:
        if self._task is not None:
            # Asked to end, not cancelled: a write under way in its thread finishes first. A cancel would return
            # at once while the thread still wrote the batch it had taken from the queue, so the last rows could
            # land after the shutdown (or never, with the process gone) and the final flush find nothing.
            self._stopping.set()
            await asyncio.gather(self._task, return_exceptions=True)
        for attempt in range(self.STOP_TRIES):  # a store back within seconds still gets the last rows
            if await self.flush() or not self._rows:
                break
            if attempt < self.STOP_TRIES - 1:
                await asyncio.sleep(1.0)
        if not await self._retry():
            log.error("budgets: settles kept while the database was away are lost at shutdown")
        if self._rows:
            self.lost += len(self._rows)
            log.error("usage log: %d rows lost at shutdown (the store did not take them)", len(self._rows))


def _passing(exc: Exception) -> bool:
    """Whether a failed write may succeed later: the PostgreSQL store unreachable (StoreUnavailable) or the disk
    (OSError); not rows the database refuses, nor the SQLite file's errors (ConfigError: dropped, as they always
    were on a single host)."""
    return isinstance(exc, StoreUnavailable | OSError)
