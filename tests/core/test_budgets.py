"""Budget periods and refusals as pure arithmetic (core.budgets)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cfai_cli.core.budgets import judge, month_start, next_month_start


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
