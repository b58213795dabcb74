"""Per-key spend ledger for budgets: neurons per key and UTC day, shared by every worker through SQLite.

Imports stdlib, core and store.db. Like store.limits, the ledger lives in the database every uvicorn worker
opens, so a budget holds across workers. The proxy adds a request's neurons (what its record says it cost)
before the end of its answer reaches the client, and checks the key's day and month totals before any
upstream call: a client that has seen an answer will be judged with that answer's cost counted. One row per
key and day keeps the month's sum to at most 31 rows. Only keys with a budget are recorded (docs/cost.md).
"""

from __future__ import annotations

from pathlib import Path

from cfai_cli.core.budgets import Refusal, day_of, judge, month_start
from cfai_cli.core.cost import day_start
from cfai_cli.store.db import connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS key_spend (
    key_id TEXT NOT NULL,
    day TEXT NOT NULL,
    neurons REAL NOT NULL,
    PRIMARY KEY (key_id, day)
);
"""


class BudgetLedger:
    def __init__(self, path: Path) -> None:
        self.path = path

    def add(self, key_id: str, neurons: float, *, now: float) -> None:
        if neurons > 0:
            with connect(self.path, _SCHEMA, immediate=True) as conn:
                conn.execute("INSERT INTO key_spend (key_id, day, neurons) VALUES (?, ?, ?) "
                             "ON CONFLICT (key_id, day) DO UPDATE SET neurons = neurons + excluded.neurons",
                             (key_id, day_of(now), neurons))

    def spent(self, key_id: str, *, now: float) -> tuple[float, float]:
        """The key's neurons today (since 00:00 UTC) and this calendar month."""
        today, first = day_of(day_start(now)), day_of(month_start(now))
        with connect(self.path, _SCHEMA) as conn:
            day, month = conn.execute(
                "SELECT COALESCE(SUM(CASE WHEN day = ? THEN neurons END), 0), COALESCE(SUM(neurons), 0) "
                "FROM key_spend WHERE key_id = ? AND day >= ? AND day <= ?",
                (today, key_id, first, today)).fetchone()
        return float(day), float(month)

    def check(self, key_id: str, *, per_day: float | None, per_month_usd: float | None,
              now: float) -> Refusal | None:
        """The refusal for a key whose recorded spend has reached a budget, or None."""
        today, month = self.spent(key_id, now=now)
        return judge(neurons_today=today, neurons_this_month=month, per_day=per_day,
                     per_month_usd=per_month_usd, now=now)
