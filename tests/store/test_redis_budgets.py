"""What only the Redis budget ledger does (store.redis_budgets, against a real Redis from tests/infra): its Lua
script decides as core.budgets.judge does on a table of edge cases; holds from many replicas at once admit exactly
what fits; counters Redis lost are reseeded from the durable ledger once, however many replicas reseed; the
model's mean cost per call is core.budgets.running_mean's."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from cfai_cli.core.budgets import judge, running_mean
from cfai_cli.core.cost import USD_PER_NEURON
from cfai_cli.store.budgets import Budget, BudgetLedger
from cfai_cli.store.redis_budgets import RedisBudgets
from cfai_cli.store.redis_limits import connect
from tests.core.test_budgets import at
from tests.infra.servers import RedisServer

pytestmark = pytest.mark.anyio
NOW = at("2026-12-02T12:00:00")
Replica = Callable[[], RedisBudgets]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def replicas(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[Replica]:
    """Replicas' ledgers: each its own Redis client, one Redis and one durable ledger (the shared store)."""
    durable = BudgetLedger(tmp_path / "cfai.db")
    prefix = f"test:{uuid.uuid4().hex}:"
    made: list[RedisBudgets] = []

    def make() -> RedisBudgets:
        made.append(RedisBudgets(connect(redis_server.url), durable, prefix=prefix))
        return made[-1]

    yield make
    for one in made:
        await one.close()
    durable.hot.close()


MONTH_USD = 100 * USD_PER_NEURON  # a month budget of 100 neurons' worth
CASES = [  # (spent today, spent earlier this month, held, wanted, per day, per month USD, admitted)
    (40.0, 0.0, 0.0, 60.0, 100.0, None, True),  # fills the budget exactly
    (40.0, 0.0, 0.0, 60.00000005, 100.0, None, True),  # a hair over: float sums' slack
    (40.0, 0.0, 0.0, 60.0000002, 100.0, None, False),  # past the slack
    (40.0, 0.0, 20.0, 40.0, 100.0, None, True),  # held counts
    (40.0, 0.0, 20.5, 40.0, 100.0, None, False),
    (100.0, 0.0, 0.0, 0.0, 100.0, None, False),  # used up: even a request estimated at nothing
    (99.99999999, 0.0, 0.0, 0.0, 100.0, None, False),  # within the slack of used up
    (99.0, 0.0, 0.0, 0.0, 100.0, None, True),  # something left, estimate nothing
    (0.1, 0.0, 0.2, 0.7, 1.0, None, True),  # 0.1 + 0.2 + 0.7 lands a hair over 1.0
    (10.0, 50.0, 0.0, 40.0, 1000.0, MONTH_USD, True),  # the month: 10 + 50 + 40 = 100
    (10.0, 50.0, 0.0, 40.5, 1000.0, MONTH_USD, False),
    (10.0, 50.0, 5.0, 35.0, None, MONTH_USD, True),  # held counts in the month too
    (10.0, 50.0, 5.0, 36.0, None, MONTH_USD, False),
    (10.0, 50.0, 0.0, 30.0, 40.0, MONTH_USD, True),  # the day: 10 + 30 = 40
    (10.0, 50.0, 5.0, 30.0, 40.0, MONTH_USD, False),  # the day refuses first
    (500.0, 0.0, 0.0, 1e9, None, None, True),  # no budget: anything
]


@pytest.mark.parametrize(("today", "earlier", "held", "wanted", "per_day", "per_month_usd", "admitted"), CASES)
async def test_the_scripts_rule_is_core_budgets_judge(replicas: Replica, today: float, earlier: float, held: float,
                                                       wanted: float, per_day: float | None,
                                                       per_month_usd: float | None, admitted: bool) -> None:
    ledger = replicas()
    await ledger.durable.add("k", today, now=NOW)
    await ledger.durable.add("k", earlier, now=at("2026-12-01T09:00:00"))
    if held:  # another request in flight, held without a budget to judge it
        assert await ledger.hold("other", "k", Budget(None, None), model="seed", calls=1, fallback=held, now=NOW,
                                 expires=NOW + 60) is None
    budget = Budget(per_day, per_month_usd)
    # RedisBudgets.hold raises AssertionError if the script and judge() disagree; both must say `admitted`
    refusal = await ledger.hold("h", "k", budget, model="cold", calls=1, fallback=wanted, now=NOW, expires=NOW + 60)
    expected = judge(neurons_today=today, neurons_this_month=today + earlier, per_day=per_day,
                     per_month_usd=per_month_usd, now=NOW, held=held, wanted=wanted)
    assert (refusal is None) == (expected is None) == admitted
    assert refusal == expected
    assert (await ledger.measure("k", now=NOW))[2] == held + (wanted if admitted else 0)


@pytest.mark.usefixtures("patient_redis")
async def test_holds_from_many_replicas_at_once_admit_exactly_what_fits(replicas: Replica) -> None:
    ledgers = [replicas() for _ in range(4)]
    await ledgers[0].durable.add("k", 5, now=NOW)
    budget = Budget(per_day=105, per_month_usd=None)
    refusals = await asyncio.gather(*(ledgers[i % 4].hold(f"h{i}", "k", budget, model="m", calls=1, fallback=10,
                                                          now=NOW, expires=NOW + 60) for i in range(40)))
    assert sum(r is None for r in refusals) == 10
    assert await ledgers[1].measure("k", now=NOW) == (5, 5, 100)
    admitted = [f"h{i}" for i, r in enumerate(refusals) if r is None]
    await asyncio.gather(*(ledgers[i % 4].settle(h, "k", 10, model="m", calls=1, now=NOW)
                           for i, h in enumerate(admitted)))
    assert await ledgers[2].measure("k", now=NOW) == (105, 105, 0)
    assert ledgers[0].durable.spent("k", now=NOW) == (105, 105)


async def test_lost_counters_are_reseeded_once_from_the_durable_ledger(replicas: Replica,
                                                                        redis_server: RedisServer) -> None:
    ledgers = [replicas() for _ in range(5)]
    await ledgers[0].hold("a", "k", Budget(100, None), model="m", calls=1, fallback=10, now=NOW, expires=NOW + 60)
    await ledgers[0].settle("a", "k", 30, model="m", calls=1, now=NOW)
    await ledgers[0].client.flushall()  # a restarted Redis: counters, holds and means gone
    # five replicas find the counters missing at once: the durable 30 is seeded once, not added five times
    measured = await asyncio.gather(*(one.measure("k", now=NOW) for one in ledgers))
    assert measured == [(30, 30, 0)] * 5
    # a replica that read the durable ledger before a settle and seeds late cannot overwrite the live counter
    await ledgers[1].settle(None, "k", 10, model="m", calls=1, now=NOW)
    stale = RedisBudgets(ledgers[2].client, BudgetLedger(ledgers[0].durable.path.parent / "stale.db"),
                         prefix=ledgers[2].prefix)
    await stale.reseed("k", NOW)  # the stale durable ledger says 0 was spent
    assert await ledgers[3].measure("k", now=NOW) == (40, 40, 0)
    # the model's mean came back from the durable ledger too: 30, then 30 + 0.25 x (10 - 30)
    refusal = await ledgers[4].hold("b", "k", Budget(100, None), model="m", calls=2, fallback=1, now=NOW,
                                    expires=NOW + 60)
    assert refusal is None and (await ledgers[4].measure("k", now=NOW))[2] == 2 * running_mean(30, 10)
    stale.durable.hot.close()


async def test_the_models_mean_is_core_budgets_running_mean(replicas: Replica) -> None:
    ledger = replicas()
    mean: float | None = None
    for i, cost in enumerate([12.5, 3.0, 7.25, 100.0, 0.1]):
        await ledger.settle(None, "k", cost * 3, model="m", calls=3, now=NOW)
        mean = running_mean(mean, cost * 3 / 3)
        # one call held at the model's mean (the huge fallback is for a model without one)
        assert await ledger.hold(f"h{i}", "k", Budget(None, None), model="m", calls=1, fallback=1e6, now=NOW,
                                 expires=NOW + 60) is None
        assert (await ledger.measure("k", now=NOW))[2] == mean
        await ledger.settle(f"h{i}", "k", None, model=None, calls=0, now=NOW)
    assert ledger.durable.mean("m") == mean


async def test_a_settle_retried_after_a_lost_reply_counts_once(replicas: Replica) -> None:
    ledger = replicas()
    assert await ledger.hold("h", "k", Budget(100, None), model="m", calls=1, fallback=10, now=NOW,
                             expires=NOW + 60) is None
    for _ in range(2):  # the second is what a retry after a lost reply sends to Redis
        await ledger._settle(keys=[*ledger.keys("k", NOW, "m"), f"{ledger.prefix}{{k}}:s:h"],
                             args=["h", "10.0", 1, "0.25", 60_000, 60_000])
    assert await ledger.measure("k", now=NOW) == (10, 10, 0)
