"""The usage log: one row per proxied request (never the key itself, only its id), and its summaries.

Imports stdlib, core and store.db. Rows are written in batches by the server's recorder, off the request
path; `summarise` groups them for `cfai usage` with counts, tokens, neurons, cost, errors and latency
percentiles; `accounts_today` sets each Cloudflare account's neurons since 00:00 UTC against its free allocation. The
strings a client or an upstream chose (model names, error codes) are stored without control characters
or terminal escapes, and bounded in length (core.printable). store.retention deletes old rows.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from itertools import chain
from operator import attrgetter
from pathlib import Path

from cfai_cli.core.cost import FREE_NEURONS_PER_DAY, allocation, day_start
from cfai_cli.core.printable import printable, printable_or_none
from cfai_cli.store.sql import Database, Tx, open_database

GROUPS = ("key", "model", "day", "route", "upstream")


@dataclass(frozen=True, slots=True)
class UsageRow:
    ts: float
    key_id: str | None
    route: str
    model: str | None
    upstream_model: str | None
    status: int
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    bytes_in: int
    bytes_out: int
    error_code: str | None
    upstream: str | None = None  # the upstream (and key: "backup#2") that answered; "cache" for a cache hit
    cache: str | None = None  # what the response cache did: hit, miss, refresh, bypass (None: not involved)
    neurons: float | None = None  # what its Workers AI calls cost (None: no Workers AI call, or no known price)
    neurons_estimated: bool = False  # estimated from published prices, not reported by Workers AI (core.cost)
    cost_usd: float | None = None  # the neurons at list price, $0.011 per 1,000 (the free allocation not counted)
    account: str | None = None  # the Cloudflare upstream whose neurons (and free allocation) were spent


@dataclass(frozen=True, slots=True)
class UsageSummary:
    group: str
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    p50_ms: float
    p95_ms: float
    neurons: float = 0.0
    cost_usd: float = 0.0
    estimated_neurons: float = 0.0  # the part of `neurons` that was estimated, not reported


@dataclass(frozen=True, slots=True)
class AccountToday:
    """One Cloudflare account's neurons since 00:00 UTC, against its free daily allocation."""

    account: str
    neurons: float
    estimated_neurons: float
    free: int
    percent: float
    resets_in_s: float
    line: str


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


# A row as the table's tuple, in C: dataclasses.astuple (deep copies, pure Python) held the GIL long
# enough, once a second in the writer thread, to show in the proxy's p99 (bench/run.py, py-spy).
_as_tuple = attrgetter(*(f.name for f in fields(UsageRow)))
_WIDTH = len(fields(UsageRow))
_COLUMN_LIST = ", ".join(f.name for f in fields(UsageRow))
_INSERT_HEAD = f"INSERT INTO usage_log ({_COLUMN_LIST}) VALUES "
_ROW_PLACES = "(" + ",".join("?" * _WIDTH) + ")"


def clean_row(row: UsageRow) -> UsageRow:
    """`row` with its client-chosen strings made safe to store and print (the same row if they were)."""
    route = printable(row.route)
    optional = (row.model, row.upstream_model, row.error_code, row.upstream, row.account)
    cleaned = tuple(map(printable_or_none, optional))
    if route == row.route and cleaned == optional:
        return row
    model, upstream_model, error_code, upstream, account = cleaned
    return replace(row, route=route, model=model, upstream_model=upstream_model, error_code=error_code,
                   upstream=upstream, account=account)


class UsageLog:
    def __init__(self, target: Path | str | Database) -> None:
        self.db = open_database(target)

    def _db(self, *, write: bool = False) -> AbstractContextManager[Tx]:
        # Appends only: no read-check-write, so no lock across replicas (SQLite still takes its write lock).
        return self.db.transaction(write=write, lock=None)

    @property
    def shared(self) -> bool:
        """PostgreSQL: its row ids are not commit-ordered, so readers keep no `after` cursor (see account_spend)."""
        return self.db.engine == "postgres"

    def write(self, rows: Sequence[UsageRow]) -> None:
        """Insert `rows` in one transaction, up to 500 rows per statement.

        The proxy calls this from a thread once a second. `executemany` releases and re-takes the GIL
        for every row, and each re-take waits on the busy event loop thread: 2,500 rows took 7.7 s next to
        a busy thread (9.6 ms alone). Multi-row INSERTs take it a few times instead: 95 ms.
        """
        if not rows:
            return
        rows = [clean_row(row) for row in rows]
        with self._db(write=True) as conn:
            limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) if isinstance(conn, sqlite3.Connection) \
                else 65_535  # PostgreSQL's bind parameters per statement
            per_statement = max(1, min(500, limit // _WIDTH))
            for start in range(0, len(rows), per_statement):
                chunk = rows[start:start + per_statement]
                conn.execute(_INSERT_HEAD + ",".join([_ROW_PLACES] * len(chunk)),
                             list(chain.from_iterable(map(_as_tuple, chunk))))
            if self.shared:
                _add_account_spend(conn, rows)

    def rows(self, *, since: float) -> list[UsageRow]:
        if not self.db.exists():
            return []
        with self._db() as conn:
            found = conn.execute(f"SELECT {_COLUMN_LIST} FROM usage_log WHERE ts >= ? ORDER BY ts", (since,)).fetchall()
        return [_row(row) for row in found]

    def cache_counts(self, *, since: float = 0.0) -> dict[str, int]:
        """Requests by what the response cache did for them (hit, miss, refresh, bypass) since `since`."""
        if not self.db.exists():
            return {}
        with self._db() as conn:
            found = conn.execute("SELECT cache, COUNT(*) FROM usage_log WHERE ts >= ? AND cache IS NOT NULL "
                                 "GROUP BY cache", (since,)).fetchall()
        return {str(status): int(count) for status, count in found}

    def neurons_by_account(self, *, since: float, after: int = 0) -> tuple[dict[str, float], int]:
        """Each Cloudflare account's neurons since `since` in the rows written after row `after`, and the last
        row id read (the router's daily caps add these up: a reading costs the rows written since the last one,
        not the whole day's). On PostgreSQL (`shared`): the whole day's totals, from account_spend, and 0."""
        if not self.db.exists():
            return {}, after
        with self._db() as conn:
            if self.shared:
                found = conn.execute("SELECT account, neurons FROM account_spend WHERE day = ?",
                                     (_day(since),)).fetchall()
                return {str(account): float(total) for account, total in found}, 0
            last = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM usage_log").fetchone()[0]
            found = conn.execute("SELECT account, SUM(neurons) FROM usage_log WHERE rowid > ? AND rowid <= ? AND "
                                 "ts >= ? AND account IS NOT NULL AND neurons IS NOT NULL GROUP BY account",
                                 (after, last, since)).fetchall()
        return {str(account): float(total) for account, total in found}, int(last)

    def summarise(self, *, since: float, by: str) -> list[UsageSummary]:
        return summarise(self.rows(since=since), by=by)


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _add_account_spend(conn: Tx, rows: Sequence[UsageRow]) -> None:
    """Per account per UTC day totals beside the rows, in their transaction (PostgreSQL: the meter reads these,
    as a row id cursor could skip rows another replica committed late)."""
    totals: dict[tuple[str, str], float] = {}
    for row in rows:
        if row.account is not None and row.neurons:
            key = (row.account, _day(row.ts))
            totals[key] = totals.get(key, 0.0) + row.neurons
    for (account, day), neurons in sorted(totals.items()):  # one order: two writers cannot deadlock
        conn.execute("INSERT INTO account_spend (account, day, neurons) VALUES (?, ?, ?) ON CONFLICT (account, day) "
                     "DO UPDATE SET neurons = account_spend.neurons + excluded.neurons", (account, day, neurons))


def _row(values: Sequence[object]) -> UsageRow:
    row = UsageRow(*values)  # type: ignore[arg-type]  # the table's columns, in UsageRow's order
    return replace(row, neurons_estimated=bool(row.neurons_estimated))


def accounts_today(rows: Sequence[UsageRow], *, now: float, free: int = FREE_NEURONS_PER_DAY) -> list[AccountToday]:
    """Neurons per Cloudflare account since 00:00 UTC (rows of any age may be given), against the free allocation."""
    start = day_start(now)
    spent: dict[str, list[float]] = {}
    for row in rows:
        if row.account is not None and row.neurons and start <= row.ts <= now:
            total = spent.setdefault(row.account, [0.0, 0.0])
            total[0] += row.neurons
            total[1] += row.neurons if row.neurons_estimated else 0.0
    out = []
    for account, (neurons, estimated) in sorted(spent.items()):
        gauge = allocation(neurons, now, free=free)
        out.append(AccountToday(account, neurons, estimated, free, gauge.percent, gauge.resets_in, gauge.line()))
    return out


def summarise(rows: Sequence[UsageRow], *, by: str) -> list[UsageSummary]:
    """Rows grouped by key, model, day, route or upstream, with counts, tokens, neurons, cost and latency
    percentiles."""
    groups: dict[str, list[UsageRow]] = {}
    for row in rows:
        if by == "key":
            name = row.key_id or "(no key)"
        elif by == "model":
            name = row.upstream_model or row.model or "(none)"
        elif by == "upstream":
            name = row.upstream or "(none)"
        elif by == "day":
            name = datetime.fromtimestamp(row.ts, UTC).strftime("%Y-%m-%d")
        else:
            name = row.route
        groups.setdefault(name, []).append(row)
    out = []
    for name, members in sorted(groups.items()):
        latencies = sorted(r.latency_ms for r in members)
        out.append(UsageSummary(name, len(members), sum(1 for r in members if r.status >= 400),
                                sum(r.prompt_tokens for r in members), sum(r.completion_tokens for r in members),
                                _percentile(latencies, 0.5), _percentile(latencies, 0.95),
                                neurons=sum(r.neurons or 0.0 for r in members),
                                cost_usd=sum(r.cost_usd or 0.0 for r in members),
                                estimated_neurons=sum(r.neurons or 0.0 for r in members if r.neurons_estimated)))
    return out


def parse_since(text: str, *, now: float | None = None) -> float:
    """'7d', '12h', '30m', '2w' or an ISO date -> a timestamp."""
    now = time.time() if now is None else now
    units = {"m": 60, "h": 3600, "d": 86400, "w": 604800}
    value = text.strip().lower()
    if value[:-1].isdigit() and value[-1:] in units:
        return now - int(value[:-1]) * units[value[-1]]
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"cannot read {text!r}: use e.g. 30m, 12h, 7d, 2w or 2026-11-01") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()

