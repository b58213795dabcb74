"""Spend budgets as pure arithmetic: a key's budget periods, and whether its spend so far has reached one.

Imports stdlib and core.cost. The clock is passed in. A day budget counts neurons since 00:00 UTC; a month
budget counts USD (neurons at list price) since 00:00 UTC on the 1st. The rule (docs/cost.md): a request is
admitted only if its estimate fits in what is left, counting what the requests in flight hold
(spent + held + estimate <= budget, and spent + held < budget for a request estimated at nothing); at its end
its hold is replaced by what it really cost. The spend can pass a budget only by how much the admitted
requests' real costs exceeded their estimates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from cfai_cli.core.cost import DAY, USD_PER_NEURON, day_start, usd_of_neurons

# Output tokens a chat request is estimated at when its model's cost is not yet known (and it asked for no fewer):
# Workers AI's own default `max_tokens` on most native models, and the size of a typical answer.
DEFAULT_OUTPUT_TOKENS = 256
MEAN_WEIGHT = 0.25  # of the newest request in a model's running mean cost per call (an exponential mean)
_SLACK = 1e-9  # relative: sums of float costs that "exactly" fill a budget may land a hair over it


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


def estimate(*, mean: float | None, fallback: float, calls: int) -> float:
    """What `calls` upstream calls of a model are held at: the model's running mean cost per call once one
    request of it has been settled (exact when its calls cost the same), else the request's own estimate
    from published prices (`fallback`, per call; see service.cost.planned_neurons)."""
    return max(0, calls) * (mean if mean is not None else fallback)


def running_mean(mean: float | None, cost: float) -> float:
    """The model's mean cost per call after one more request's: an exponential mean of the recent ones."""
    return cost if mean is None else mean + MEAN_WEIGHT * (cost - mean)


def slack(budget: float) -> float:
    """How far float sums may land past `budget` and still count as filling it exactly."""
    return abs(budget) * _SLACK


def month_neurons(per_month_usd: float) -> float:
    """A month's budget in USD as neurons at list price: what a month's spend is compared with."""
    return per_month_usd / USD_PER_NEURON


def fits(total: float, wanted: float, budget: float) -> bool:
    """Whether `wanted` more fits in `budget` beside `total` (spent and held): within it, and something left.
    (store.redis_budgets's Lua applies this rule word for word, with `slack` passed in.)"""
    margin = slack(budget)
    return total < budget - margin and total + wanted <= budget + margin


def judge(*, neurons_today: float, neurons_this_month: float, per_day: float | None, per_month_usd: float | None,
          now: float, held: float = 0.0, wanted: float = 0.0) -> Refusal | None:
    """The refusal for a request of `wanted` neurons that does not fit in one of its key's budgets beside what
    was spent and what the requests in flight hold (`held`), or None (the day's budget is judged first)."""
    held_note = f", {held:,.2f} held by requests in flight" if held > 0 else ""
    if per_day is not None and not fits(neurons_today + held, wanted, per_day):
        reset = day_start(now) + DAY
        opening = _opening(neurons_today, per_day, wanted, f"{per_day:,g} neurons per day", f"{wanted:,.2f} neurons")
        return Refusal("neurons per day", (
            f"{opening} ({neurons_today:,.2f} spent today{held_note}). "
            f"It resets at {_when(reset)} (in {_duration(reset - now)})."), reset - now)
    if per_month_usd is not None and not fits(neurons_this_month + held, wanted, month_neurons(per_month_usd)):
        reset = next_month_start(now)
        spent_usd, held_usd = usd_of_neurons(neurons_this_month), usd_of_neurons(held)
        note = f", ${held_usd:,.4f} held by requests in flight" if held > 0 else ""
        opening = _opening(spent_usd, per_month_usd, wanted, f"${per_month_usd:,g} per month",
                           f"${usd_of_neurons(wanted):,.6f}")
        return Refusal("USD per month", (
            f"{opening} (${spent_usd:,.4f} spent this month{note}, at list price). "
            f"It resets at {_when(reset)} (in {_duration(reset - now)})."), reset - now)
    return None


def _opening(spent: float, budget: float, wanted: float, name: str, shown: str) -> str:
    if spent >= budget - abs(budget) * _SLACK:
        return f"This key has used its budget of {name}"
    if wanted <= 0:
        return f"Nothing is left of this key's budget of {name} for another request"
    return f"This request (estimated at {shown}) does not fit in what is left of this key's budget of {name}"


def _duration(seconds: float) -> str:
    minutes = max(1, int(seconds // 60))
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    return (f"{days} d " if days else "") + (f"{hours} h " if hours or days else "") + f"{mins} m"
