"""Spend budgets as pure arithmetic: a key's budget periods, and whether its spend so far has reached one.

Imports stdlib and core.cost. The clock is passed in. A day budget counts neurons since 00:00 UTC; a month
budget counts USD (neurons at list price) since 00:00 UTC on the 1st. The rule (docs/cost.md): a request is
refused once the period's recorded spend has reached the budget (spent >= budget); what a request costs is
known only at its end, so the requests already in flight when the budget was reached may still go over it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from cfai_cli.core.cost import DAY, day_start, usd_of_neurons


def month_start(now: float) -> float:
    """00:00 UTC on the first day of `now`'s calendar month."""
    moment = datetime.fromtimestamp(now, UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp()


def next_month_start(now: float) -> float:
    moment = datetime.fromtimestamp(now, UTC)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return datetime(year, month, 1, tzinfo=UTC).timestamp()


def day_of(ts: float) -> str:
    """The UTC day of `ts` as YYYY-MM-DD: the ledger's bucket."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True, slots=True)
class Refusal:
    budget: str  # "neurons per day" or "USD per month"
    message: str
    retry_after: float  # seconds until the period resets


def _when(reset_at: float) -> str:
    return datetime.fromtimestamp(reset_at, UTC).strftime("%Y-%m-%d %H:%M UTC")


def judge(*, neurons_today: float, neurons_this_month: float, per_day: float | None, per_month_usd: float | None,
          now: float) -> Refusal | None:
    """The refusal for a key whose spend has reached one of its budgets, or None (the day's budget first)."""
    if per_day is not None and neurons_today >= per_day:
        reset = day_start(now) + DAY
        return Refusal("neurons per day", (
            f"This key has used its budget of {per_day:,g} neurons per day ({neurons_today:,.2f} spent today). "
            f"It resets at {_when(reset)} (in {_duration(reset - now)})."), reset - now)
    spent_usd = usd_of_neurons(neurons_this_month)
    if per_month_usd is not None and spent_usd >= per_month_usd:
        reset = next_month_start(now)
        return Refusal("USD per month", (
            f"This key has used its budget of ${per_month_usd:,g} per month (${spent_usd:,.4f} spent this month, "
            f"at list price). It resets at {_when(reset)} (in {_duration(reset - now)})."), reset - now)
    return None


def _duration(seconds: float) -> str:
    minutes = max(1, int(seconds // 60))
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    return (f"{days} d " if days else "") + (f"{hours} h " if hours or days else "") + f"{mins} m"
