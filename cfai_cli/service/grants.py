"""What an API key may do, written into a request's record: its model patterns, its rate limits, its budget.

Imports anyio, store and service.record/cost. The proxy's key authentication grants each request this way, and
so does the batch executor for each line it runs for a key (service.batch_lines): one definition of a key's
standing, however the request arrived.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cfai_cli.errors import QuotaExceeded, RateLimited
from cfai_cli.service.cost import planned_neurons
from cfai_cli.service.record import RequestRecord
from cfai_cli.store.budgets import Budget, Budgets
from cfai_cli.store.keys import KeyRecord
from cfai_cli.store.limit_rule import RateLimits

HOLD_SECONDS = 360.0  # a hold outlives its request by this much at most (a crashed worker's holds expire)


def grant(request: RequestRecord, key: KeyRecord, limiter: RateLimits, ledger: Budgets, *,
          cache: Callable[[], dict[str, Any]] = dict, hold_seconds: float = HOLD_SECONDS) -> None:
    """The router and services judge the request on its record, after defaults, aliases and routes have made
    it what actually runs; a request that fans out charges its other upstream calls to the key's limits, and
    a budgeted key's request holds its calls' estimated cost before they are made."""
    request.key_id = key.id
    request.model_patterns = key.policy.models
    if key.policy.budgeted:
        request.budget = holder(request, key, ledger, cache, hold_seconds)
    if key.policy.limited:
        async def charge(calls: int) -> None:
            decision = await limiter.admit(key.id, key.policy, now=time.time(), units=calls)
            if not decision.allowed:
                error = RateLimited(f"Rate limit reached: {decision.reason}. This request needs {calls} more "
                                    f"upstream calls. Try again in {decision.retry_after:.0f} s.",
                                    retry_after=decision.retry_after, code="rate_limit_exceeded")
                error.headers = decision.headers
                raise error

        request.charge = charge


def holder(request: RequestRecord, key: KeyRecord, ledger: Budgets, cache: Callable[[], dict[str, Any]],
           hold_seconds: float) -> Callable[[str, int], Awaitable[None]]:
    """The request's budget hold (store.budgets): before its calls are made, their estimated cost is held
    if it fits in what the key has left, in one write transaction every worker takes in turn. The hold is
    settled with the real cost when the request ends (server.observe; service.batch_lines for batch lines)."""
    budget = Budget(key.policy.budget_neurons_per_day, key.policy.budget_usd_per_month)

    async def hold(model: str, calls: int) -> None:
        # 32 random hex digits, as uuid4().hex gave (its UUID object, built per request, cost ~5x more).
        hold_id = request.hold_id or os.urandom(16).hex()
        fallback = planned_neurons(request, model, cache())
        now = time.time()
        refusal = await ledger.hold(hold_id, key.id, budget, model=model, calls=calls, fallback=fallback, now=now,
                                    expires=now + hold_seconds)
        if refusal is not None:
            raise QuotaExceeded(refusal.message, retry_after=refusal.retry_after)
        request.hold_id = hold_id

    return hold
