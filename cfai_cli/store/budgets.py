"""Per-key spend ledger for budgets: neurons per key and UTC day, and holds for the requests in flight, shared by
every worker through SQLite.

Imports stdlib, core and store. Like store.limits, the ledger lives in the database every uvicorn worker
opens, so a budget holds across workers. Before its first upstream call a request *holds* its estimated cost:
one write transaction (BEGIN IMMEDIATE, group-committed with its tick's others on the loop when it can: store.hot)
reads the key's spend, the holds of its requests in flight and the model's running mean cost, and records the
hold only if it fits (core.budgets).
At its end, whichever way it ends, the hold is replaced by what the request really cost, and the model's mean
learns from it. A hold expires (a worker that died mid-request must not block its key for ever), and the
key's day and month totals count only holds not yet expired. One row per key and day keeps the month's sum
to at most 31 rows; `prune` drops the days before this month and the expired holds. Only keys with a budget
are recorded (docs/cost.md).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol, TypeVar

from cfai_cli.core.budgets import Refusal, day_of, estimate, judge, month_start, running_mean
from cfai_cli.core.cost import DAY
from cfai_cli.errors import StoreUnavailable
from cfai_cli.store.db import connect
from cfai_cli.store.hot import HotPath
from cfai_cli.store.sql import Database, Tx, open_database

log = logging.getLogger("cfai.budgets")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS key_spend (
    key_id TEXT NOT NULL,
    day TEXT NOT NULL,
    neurons REAL NOT NULL,
    PRIMARY KEY (key_id, day)
);
CREATE TABLE IF NOT EXISTS budget_holds (
    id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    neurons REAL NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS budget_holds_key ON budget_holds (key_id, expires);
CREATE TABLE IF NOT EXISTS model_cost (model TEXT PRIMARY KEY, neurons REAL NOT NULL);
"""
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Budget:
    per_day: float | None
    per_month_usd: float | None


@dataclass(frozen=True, slots=True)
class Pruned:
    days: int = 0
    holds: int = 0


@lru_cache(maxsize=4)
def _buckets(day: int) -> tuple[str, str]:
    """The ledger's bucket for UTC day number `day`, and its month's first (datetime's strftime, four times a
    request, was a tenth of what a budget added to it)."""
    start = day * DAY
    return day_of(start), day_of(month_start(start))


def buckets(now: float) -> tuple[str, str]:
    """The ledger's buckets for `now`: its UTC day and its month's first day (YYYY-MM-DD)."""
    return _buckets(int(now // DAY))


def _spent(conn: Tx, key_id: str, now: float) -> tuple[float, float]:
    today, first = _buckets(int(now // DAY))
    day, month = conn.execute(
        "SELECT COALESCE(SUM(CASE WHEN day = ? THEN neurons END), 0), COALESCE(SUM(neurons), 0) "
        "FROM key_spend WHERE key_id = ? AND day >= ? AND day <= ?",
        (today, key_id, first, today)).fetchone()
    return float(day), float(month)


def _held(conn: sqlite3.Connection, key_id: str, now: float) -> float:
    (held,) = conn.execute("SELECT COALESCE(SUM(neurons), 0) FROM budget_holds WHERE key_id = ? AND expires > ?",
                           (key_id, now)).fetchone()
    return float(held)


# A key's standing in one statement (SQLite's ledger): its neurons today and this month, and what its requests in
# flight hold, with a model's mean cost per call as a fourth column for a hold (NULL for the door's check). One
# SELECT where two or three ran, each a cursor, a GIL release and SQLite's mutexes (bench/keys_instructions.py).
_STANDING = ("SELECT COALESCE(SUM(CASE WHEN day = ?2 THEN neurons END), 0), COALESCE(SUM(neurons), 0), "
             "(SELECT COALESCE(SUM(neurons), 0) FROM budget_holds WHERE key_id = ?1 AND expires > ?4), "
             "(SELECT neurons FROM model_cost WHERE model = ?5) "
             "FROM key_spend WHERE key_id = ?1 AND day >= ?3 AND day <= ?2")


def _standing(conn: sqlite3.Connection, key_id: str, now: float, model: str | None
              ) -> tuple[float, float, float, float | None]:
    """The key's neurons today and this month, its holds, and `model`'s mean cost per call (None: not known)."""
    today, first = _buckets(int(now // DAY))
    day, month, held, mean = conn.execute(_STANDING, (key_id, today, first, now, model)).fetchone()
    return float(day), float(month), float(held), None if mean is None else float(mean)


def _add(conn: Tx, key_id: str, neurons: float, now: float) -> None:
    conn.execute("INSERT INTO key_spend (key_id, day, neurons) VALUES (?, ?, ?) "
                 "ON CONFLICT (key_id, day) DO UPDATE SET neurons = key_spend.neurons + excluded.neurons",
                 (key_id, _buckets(int(now // DAY))[0], neurons))


class Budgets(Protocol):
    """What the server asks of a budget ledger: this host's SQLite one (BudgetLedger), or Redis's shared by replicas
    (store.redis_budgets behind store.coordination.CoordinatedBudgets). The same rule (core.budgets) decides."""

    async def check(self, key_id: str, *, per_day: float | None, per_month_usd: float | None,
                    now: float) -> Refusal | None: ...

    async def hold(self, hold_id: str, key_id: str, budget: Budget, *, model: str, calls: int, fallback: float,
                   now: float, expires: float) -> Refusal | None: ...

    async def settle(self, hold_id: str | None, key_id: str, neurons: float | None, *, model: str | None,
                     calls: int, now: float) -> None: ...


class Durable(Protocol):
    """The record Redis's budgets settle into and reseed from: the host's BudgetLedger on a single host's SQLite,
    SpendStore on the store's PostgreSQL."""

    def spent(self, key_id: str, *, now: float) -> tuple[float, float]: ...

    def mean(self, model: str) -> float | None: ...

    async def settle(self, hold_id: str | None, key_id: str, neurons: float | None, *, model: str | None,
                     calls: int, now: float) -> None: ...


class BudgetLedger:
    """The ledger in the SQLite database at `path`: the server's calls are async, on the process's hot path (`hot`,
    shared with the rate limiter so that one tick's pieces commit together); `spent` and `held` read it at once."""

    def __init__(self, path: Path, hot: HotPath | None = None,
                 elsewhere: Callable[[str, float], tuple[float, float]] | None = None) -> None:
        self.path = path
        self.hot = hot or HotPath(path)
        # Spend recorded outside this file (a shared store's SpendStore), counted with its own: a replica judging
        # budgets alone while Redis is away (on_failure = "open") still sees what every replica settled.
        self.elsewhere = elsewhere

    async def _spent_elsewhere(self, key_id: str, now: float) -> tuple[float, float]:
        """What the shared store's record holds for the key (a thread: a PostgreSQL round trip); callers without
        one (`elsewhere` None, the usual case) skip this coroutine."""
        import anyio.to_thread

        elsewhere = self.elsewhere
        assert elsewhere is not None
        return await anyio.to_thread.run_sync(lambda: elsewhere(key_id, now))

    async def _run(self, work: Callable[[sqlite3.Connection], T], *, write: bool = True, single: bool = False) -> T:
        self.hot.ensure(_SCHEMA)
        return await self.hot.run(work, write=write, single=single)

    async def add(self, key_id: str, neurons: float, *, now: float) -> None:
        if neurons > 0:
            await self._run(lambda conn: _add(conn, key_id, neurons, now))

    def spent(self, key_id: str, *, now: float) -> tuple[float, float]:
        """The key's neurons today (since 00:00 UTC) and this calendar month."""
        with connect(self.path, _SCHEMA) as conn:
            return _spent(conn, key_id, now)

    def held(self, key_id: str, *, now: float) -> float:
        """Neurons the key's requests in flight hold (their holds not yet expired)."""
        with connect(self.path, _SCHEMA) as conn:
            return _held(conn, key_id, now)

    def mean(self, model: str) -> float | None:
        """The model's running mean cost per call, None before its first settled request."""
        with connect(self.path, _SCHEMA) as conn:
            row = conn.execute("SELECT neurons FROM model_cost WHERE model = ?", (model,)).fetchone()
        return None if row is None else float(row[0])

    async def check(self, key_id: str, *, per_day: float | None, per_month_usd: float | None,
                    now: float) -> Refusal | None:
        """The refusal for a key whose spend and holds have reached a budget, or None (the door's check: what a
        request will cost is not known there)."""
        # Without a shared store's record (the usual case) no coroutine is awaited for it.
        other_day, other_month = (0.0, 0.0) if self.elsewhere is None else await self._spent_elsewhere(key_id, now)

        def work(conn: sqlite3.Connection) -> Refusal | None:
            today, month, held, _ = _standing(conn, key_id, now, None)
            return judge(neurons_today=today + other_day, neurons_this_month=month + other_month, per_day=per_day,
                         per_month_usd=per_month_usd, now=now, held=held)

        return await self._run(work, write=False, single=True)  # one SELECT: one snapshot, no BEGIN needed

    async def hold(self, hold_id: str, key_id: str, budget: Budget, *, model: str, calls: int, fallback: float,
                   now: float, expires: float) -> Refusal | None:
        """Hold what `calls` more upstream calls of `model` are estimated to cost (core.budgets.estimate, with
        `fallback` per call when the model has no mean yet) under `hold_id`, if it fits; else the refusal."""
        other_day, other_month = (0.0, 0.0) if self.elsewhere is None else await self._spent_elsewhere(key_id, now)

        def work(conn: sqlite3.Connection) -> Refusal | None:
            today, month, held, mean = _standing(conn, key_id, now, model)
            wanted = estimate(mean=mean, fallback=fallback, calls=calls)
            refusal = judge(neurons_today=today + other_day, neurons_this_month=month + other_month,
                            per_day=budget.per_day, per_month_usd=budget.per_month_usd, now=now, held=held,
                            wanted=wanted)
            if refusal is None:
                conn.execute("INSERT INTO budget_holds (id, key_id, neurons, expires) VALUES (?, ?, ?, ?) "
                             "ON CONFLICT (id) DO UPDATE SET neurons = neurons + excluded.neurons, "
                             "expires = excluded.expires", (hold_id, key_id, wanted, expires))
            return refusal

        return await self._run(work)

    async def settle(self, hold_id: str | None, key_id: str, neurons: float | None, *, model: str | None,
                     calls: int, now: float) -> None:
        """Replace the request's hold by what it cost (nothing if its cost is unknown), in one transaction, and
        let its model's mean cost per call learn from it."""
        def work(conn: sqlite3.Connection) -> None:
            if hold_id is not None:
                conn.execute("DELETE FROM budget_holds WHERE id = ?", (hold_id,))
            if neurons is not None and neurons > 0:
                _add(conn, key_id, neurons, now)
            if neurons is not None and model is not None and calls > 0:
                row = conn.execute("SELECT neurons FROM model_cost WHERE model = ?", (model,)).fetchone()
                mean = running_mean(None if row is None else float(row[0]), neurons / calls)
                conn.execute("INSERT INTO model_cost (model, neurons) VALUES (?, ?) "
                             "ON CONFLICT (model) DO UPDATE SET neurons = excluded.neurons", (model, mean))

        await self._run(work)


class SpendStore:
    """The durable part of the ledger, key_spend and model_cost, in the store's database (store.sql): on a shared
    gateway (PostgreSQL) the coordination layer keeps holds and hot counters in Redis, settles into these
    tables and reseeds its counters from them. The single host's BudgetLedger keeps the same tables in SQLite."""

    BACKLOG = 10_000  # settles kept while the database is away (~200 bytes each); past it the oldest are lost

    def __init__(self, target: Path | str | Database) -> None:
        self.db = open_database(target)
        # Settles the database could not take (StoreUnavailable), oldest first: tried again before the next
        # settle and by the usage recorder's tick (`retry`), so an outage loses no spend unless it outlasts BACKLOG.
        self._backlog: deque[tuple[str, float | None, str | None, int, float]] = deque()
        self._backlog_lock = threading.Lock()
        self.lost = 0

    def add(self, key_id: str, neurons: float, *, now: float) -> None:
        if neurons > 0:
            with self.db.transaction(write=True, lock=None) as conn:  # one atomic upsert: nothing to serialise
                _add(conn, key_id, neurons, now)

    def spent(self, key_id: str, *, now: float) -> tuple[float, float]:
        """The key's neurons today (since 00:00 UTC) and this calendar month."""
        with self.db.transaction() as conn:
            return _spent(conn, key_id, now)

    def mean(self, model: str) -> float | None:
        """The model's running mean cost per call, None before its first settled request."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT neurons FROM model_cost WHERE model = ?", (model,)).fetchone()
        return None if row is None else float(row[0])

    def learn(self, model: str, neurons: float, *, calls: int) -> None:
        """Let `model`'s mean cost per call learn from a request's `calls` calls costing `neurons` (read, then
        write: under the table's lock, so replicas' updates are not lost)."""
        if calls <= 0:
            return
        with self.db.transaction(write=True, lock="model_cost") as conn:
            row = conn.execute("SELECT neurons FROM model_cost WHERE model = ?", (model,)).fetchone()
            mean = running_mean(None if row is None else float(row[0]), neurons / calls)
            conn.execute("INSERT INTO model_cost (model, neurons) VALUES (?, ?) "
                         "ON CONFLICT (model) DO UPDATE SET neurons = excluded.neurons", (model, mean))

    async def settle(self, hold_id: str | None, key_id: str, neurons: float | None, *, model: str | None,
                     calls: int, now: float) -> None:
        """What a finished request cost, as the durable side of Redis's budgets (store.redis_budgets): its holds
        live in Redis only, so `hold_id` has nothing to drop here. In a worker thread: a PostgreSQL round trip
        must not stall the event loop."""
        import anyio.to_thread

        await anyio.to_thread.run_sync(self._settle_or_keep, (key_id, neurons, model, calls, now))

    async def retry(self) -> bool:
        """Write the settles kept while the database was away (nothing to do: no thread hop); True when none
        is left."""
        if self._backlog:
            import anyio.to_thread

            await anyio.to_thread.run_sync(self._settle_or_keep, None)
        return not self._backlog

    def _settle_or_keep(self, item: tuple[str, float | None, str | None, int, float] | None) -> None:
        with self._backlog_lock:  # one writer of the backlog: kept settles are written once, in order
            try:
                while self._backlog:
                    self._apply(*self._backlog[0])
                    self._backlog.popleft()
                if item is not None:
                    self._apply(*item)
            except StoreUnavailable as exc:
                if item is not None:
                    if not self._backlog:
                        log.error("budgets: a settle could not be written (%s); kept and tried again", exc)
                    self._backlog.append(item)
                    if len(self._backlog) > self.BACKLOG:
                        self._backlog.popleft()
                        self.lost += 1
                        log.error("budgets: %d settles lost (the database stayed away past %d kept)", self.lost,
                                  self.BACKLOG)

    def _apply(self, key_id: str, neurons: float | None, model: str | None, calls: int, now: float) -> None:
        if neurons is not None and neurons > 0:
            self.add(key_id, neurons, now=now)
        if neurons is not None and model is not None:
            self.learn(model, neurons, calls=calls)

    def prune(self, *, now: float) -> int:
        """Delete the spend of days before this calendar month (no budget reads them)."""
        with self.db.transaction(write=True, lock=None) as conn:
            return int(conn.execute("DELETE FROM key_spend WHERE day < ?", (day_of(month_start(now)),)).rowcount)


def prune(path: Path, *, now: float) -> Pruned:
    """Delete the spend of days before this calendar month (no budget reads them) and the expired holds."""
    with connect(path, _SCHEMA, immediate=True) as conn:
        days = conn.execute("DELETE FROM key_spend WHERE day < ?", (day_of(month_start(now)),)).rowcount
        holds = conn.execute("DELETE FROM budget_holds WHERE expires <= ?", (now,)).rowcount
    return Pruned(days=days, holds=holds)
