"""Budget periods and refusals as pure arithmetic (core.budgets)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cfai_cli.core.budgets import estimate, judge, month_start, next_month_start, running_mean
from cfai_cli.core.cost import usd_of_neurons


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_month_bounds_roll_over_the_year() -> None:
    assert month_start(at("2026-12-31T23:59:59")) == at("2026-12-01T00:00:00")
    assert next_month_start(at("2026-12-31T23:59:59")) == at("2027-01-01T00:00:00")
    assert next_month_start(at("2026-02-01T00:00:00")) == at("2026-03-01T00:00:00")


def test_refused_once_spent_reaches_the_day_budget_with_its_reset() -> None:
    now = at("2026-12-01T19:30:00")
    assert judge(neurons_today=99.99, neurons_this_month=99.99, per_day=100, per_month_usd=None, now=now) is None
    refusal = judge(neurons_today=100, neurons_this_month=100, per_day=100, per_month_usd=None, now=now)
    assert refusal is not None and refusal.budget == "neurons per day"
    assert refusal.retry_after == pytest.approx(4.5 * 3600)
    assert "100 neurons per day" in refusal.message and "2026-12-02 00:00 UTC (in 4 h 30 m)" in refusal.message


def test_refused_once_spent_reaches_the_month_budget_with_its_reset() -> None:
    now = at("2026-12-31T22:00:00")
    # $1 = 90,909.09 neurons at $0.011 per 1,000.
    assert judge(neurons_today=0, neurons_this_month=90_909, per_day=None, per_month_usd=1, now=now) is None
    refusal = judge(neurons_today=0, neurons_this_month=90_910, per_day=1e9, per_month_usd=1, now=now)
    assert refusal is not None and refusal.budget == "USD per month" and refusal.retry_after == 7200
    assert "$1 per month" in refusal.message and "2027-01-01 00:00 UTC (in 2 h 0 m)" in refusal.message


def test_a_request_is_admitted_only_if_its_estimate_fits_beside_the_holds() -> None:
    now = at("2026-12-01T19:30:00")
    assert judge(neurons_today=60, neurons_this_month=60, per_day=100, per_month_usd=None, now=now,
                 held=20, wanted=20) is None  # 60 + 20 + 20 = 100: fits exactly
    refusal = judge(neurons_today=60, neurons_this_month=60, per_day=100, per_month_usd=None, now=now,
                    held=20, wanted=20.5)
    assert refusal is not None and "This request (estimated at 20.50 neurons) does not fit" in refusal.message
    assert "(60.00 spent today, 20.00 held by requests in flight)" in refusal.message
    # Estimated at nothing (an unpriced model), a request still needs something left.
    assert judge(neurons_today=60, neurons_this_month=60, per_day=100, per_month_usd=None, now=now, held=39.9) is None
    full = judge(neurons_today=60, neurons_this_month=60, per_day=100, per_month_usd=None, now=now, held=40)
    assert full is not None and full.message.startswith("Nothing is left of this key's budget of 100 neurons")


@pytest.mark.parametrize("cost", [63.227272727272734, 0.1, 1 / 3, 7.7])
def test_ten_calls_fill_a_budget_of_ten_calls_whatever_the_float_rounding(cost: float) -> None:
    now = at("2026-12-01T19:30:00")
    usd = usd_of_neurons(10 * cost)
    spent = 0.0
    for _ in range(9):
        spent += cost
    for per_day, per_month_usd in ((10 * cost, None), (None, usd)):
        assert judge(neurons_today=spent, neurons_this_month=spent, per_day=per_day, per_month_usd=per_month_usd,
                     now=now, wanted=estimate(mean=running_mean(running_mean(None, cost), cost), fallback=0,
                                             calls=1)) is None
        assert judge(neurons_today=spent + cost, neurons_this_month=spent + cost, per_day=per_day,
                     per_month_usd=per_month_usd, now=now, wanted=cost) is not None
