"""The budget ledgers, SQLite's and Redis's (a real server, tests/infra, over a durable SQLite ledger): neurons per
key and UTC day, summed for today and this calendar month; holds for the requests in flight, settled to their real
cost, expiring; Redis's counters reseeded from the durable ledger; and the SQLite ledger's pruning
(store.retention). Every behaviour test runs against both implementations."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cfai_cli.store.budgets import Budget, BudgetLedger, Budgets
from cfai_cli.store.redis_budgets import RedisBudgets
from cfai_cli.store.redis_limits import connect
from cfai_cli.store.retention import Pruned, Retention, prune
from tests.core.test_budgets import at

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Ledger:
    """A ledger under test, and how the tests put spend in it and read it back."""

    budgets: Budgets
    durable: BudgetLedger
    redis: RedisBudgets | None = None

    async def add(self, key_id: str, neurons: float, *, now: float) -> None:
        """Spend settled before the test reads: in the durable ledger (Redis reseeds its counters from it)."""
        await self.durable.add(key_id, neurons, now=now)

    async def spent(self, key_id: str, *, now: float) -> tuple[float, float]:
        if self.redis is None:
            return self.durable.spent(key_id, now=now)
        today, month, _ = await self.redis.measure(key_id, now=now)
        return today, month

    async def held(self, key_id: str, *, now: float) -> float:
        if self.redis is None:
            return self.durable.held(key_id, now=now)
        return (await self.redis.measure(key_id, now=now))[2]


@pytest.fixture(params=["sqlite", "redis"])
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Ledger]:
    durable = BudgetLedger(tmp_path / "cfai.db")
    if request.param == "sqlite":
        yield Ledger(durable, durable)
    else:
        redis = RedisBudgets(connect(request.getfixturevalue("redis_server").url), durable,
                             prefix=f"test:{uuid.uuid4().hex}:")
        yield Ledger(redis, durable, redis)
        await redis.close()
    durable.hot.close()


async def test_the_ledger_sums_today_and_this_month_per_key(ledger: Ledger) -> None:
    await ledger.add("key_a", 5, now=at("2026-11-30T23:59:00"))  # last month
    await ledger.add("key_a", 7, now=at("2026-12-01T08:00:00"))
    await ledger.add("key_a", 3, now=at("2026-12-02T01:00:00"))
    await ledger.add("key_a", 2, now=at("2026-12-02T23:00:00"))
    await ledger.add("key_b", 50, now=at("2026-12-02T02:00:00"))
    await ledger.add("key_a", 0, now=at("2026-12-02T02:00:00"))
    assert await ledger.spent("key_a", now=at("2026-12-02T23:30:00")) == (5.0, 12.0)
    assert await ledger.spent("key_a", now=at("2026-12-03T00:00:00")) == (0.0, 12.0)
    refusal = await ledger.budgets.check("key_a", per_day=5, per_month_usd=None, now=at("2026-12-02T23:30:00"))
    assert refusal is not None and "resets at 2026-12-03 00:00 UTC" in refusal.message


DAY_BUDGET = Budget(per_day=100, per_month_usd=None)


async def test_a_hold_is_admitted_only_if_it_fits_and_is_replaced_by_the_real_cost(ledger: Ledger) -> None:
    budgets, now = ledger.budgets, at("2026-12-02T12:00:00")
    # No mean for the model yet: held at the fallback per call (here 30 for each of 2 calls).
    assert await budgets.hold("h1", "key_a", DAY_BUDGET, model="m", calls=2, fallback=30, now=now,
                              expires=now + 60) is None
    assert await ledger.held("key_a", now=now) == 60
    refusal = await budgets.hold("h2", "key_a", DAY_BUDGET, model="m", calls=2, fallback=30, now=now,
                                 expires=now + 60)
    assert refusal is not None and "estimated at 60.00 neurons" in refusal.message
    assert "60.00 held by requests in flight" in refusal.message
    assert await ledger.held("key_a", now=now) == 60  # a refused hold records nothing
    # Settled: the hold goes, the real cost counts, and the model's mean per call (20) is learnt.
    await budgets.settle("h1", "key_a", 40, model="m", calls=2, now=now)
    assert await ledger.held("key_a", now=now) == 0 and await ledger.spent("key_a", now=now) == (40, 40)
    assert ledger.durable.spent("key_a", now=now) == (40, 40)  # the durable record, whichever ledger judged
    # 40 spent + 3 calls x 20 = 100: fits exactly; a fourth call would not.
    assert await budgets.hold("h3", "key_a", DAY_BUDGET, model="m", calls=3, fallback=1, now=now,
                              expires=now + 60) is None
    assert await budgets.hold("h4", "key_a", DAY_BUDGET, model="m", calls=1, fallback=1, now=now, expires=now + 60)
    # A request whose cost is unknown settles at nothing, and teaches the mean nothing.
    await budgets.settle("h3", "key_a", None, model="m", calls=3, now=now)
    assert await ledger.spent("key_a", now=now) == (40, 40)
    assert await budgets.hold("h5", "key_a", DAY_BUDGET, model="m", calls=3, fallback=1, now=now,
                              expires=now + 60) is None
    assert await ledger.held("key_a", now=now) == 60


async def test_an_expired_hold_blocks_nothing(ledger: Ledger) -> None:
    budgets, now = ledger.budgets, at("2026-12-02T12:00:00")
    await ledger.add("key_a", 7, now=at("2026-12-01T08:00:00"))
    # A worker died holding the whole budget: once the hold expires, the key is admitted again.
    assert await budgets.hold("dead", "key_a", DAY_BUDGET, model="m", calls=1, fallback=100, now=now,
                              expires=now + 60) is None
    assert await budgets.hold("next", "key_a", DAY_BUDGET, model="m", calls=1, fallback=1, now=now + 30,
                              expires=now + 90) is not None
    assert await budgets.check("key_a", per_day=100, per_month_usd=None, now=now + 30) is not None
    assert await ledger.held("key_a", now=now + 61) == 0
    assert await budgets.check("key_a", per_day=100, per_month_usd=None, now=now + 61) is None
    assert await budgets.hold("next", "key_a", DAY_BUDGET, model="m", calls=1, fallback=1, now=now + 61,
                              expires=now + 121) is None
    assert await ledger.held("key_a", now=now + 61) == 1 and await ledger.spent("key_a", now=now + 61) == (0, 7)


async def test_expired_holds_and_last_months_days_are_pruned(tmp_path: Path) -> None:
    db = tmp_path / "cfai.db"
    ledger = BudgetLedger(db)
    now = at("2026-12-02T12:00:00")
    await ledger.add("key_a", 5, now=at("2026-11-30T23:59:00"))  # last month: no budget reads it
    await ledger.add("key_a", 7, now=at("2026-12-01T08:00:00"))
    assert await ledger.hold("dead", "key_a", DAY_BUDGET, model="m", calls=1, fallback=100, now=now,
                             expires=now + 60) is None
    assert await ledger.hold("next", "key_a", DAY_BUDGET, model="m", calls=1, fallback=1, now=now + 61,
                             expires=now + 121) is None
    assert prune(db, Retention(), now=now + 61) == Pruned(budget_days=1, budget_holds=1)
    assert ledger.spent("key_a", now=now + 61) == (0, 7) and ledger.held("key_a", now=now + 61) == 1
    assert prune(db, Retention(), now=now + 61) == Pruned()


def test_the_durable_spend_on_either_engine(database: Path | str) -> None:
    """SpendStore: what a shared gateway keeps in PostgreSQL (its holds live in Redis), the same SQL as SQLite's."""
    import threading

    from cfai_cli.store.budgets import SpendStore

    spend = SpendStore(database)
    spend.add("key_a", 5, now=at("2026-11-30T23:59:00"))  # last month
    spend.add("key_a", 7, now=at("2026-12-01T08:00:00"))
    spend.add("key_a", 0, now=at("2026-12-02T08:00:00"))
    threads = [threading.Thread(target=spend.add, args=("key_a", 1.5), kwargs={"now": at("2026-12-02T09:00:00")})
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert spend.spent("key_a", now=at("2026-12-02T23:00:00")) == (12.0, 19.0)  # concurrent upserts all count
    assert spend.spent("key_b", now=at("2026-12-02T23:00:00")) == (0.0, 0.0)
    assert spend.mean("@cf/m") is None
    spend.learn("@cf/m", 30.0, calls=3)
    assert spend.mean("@cf/m") == 10.0
    spend.learn("@cf/m", 5.0, calls=0)  # nothing to learn from
    assert spend.mean("@cf/m") == 10.0
    assert spend.spent("key_a", now=at("2026-11-30T23:59:30")) == (5.0, 5.0)
    assert spend.prune(now=at("2026-12-02T23:00:00")) == 1  # November's day: no budget reads it
    assert spend.spent("key_a", now=at("2026-11-30T23:59:30")) == (0.0, 0.0)
    assert spend.spent("key_a", now=at("2026-12-02T23:00:00")) == (12.0, 19.0)
