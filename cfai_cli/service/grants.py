"""What an API key may do, written into a request's record: its model patterns and its rate limits.

Imports anyio, store and service.record. The proxy's key authentication grants each request this way, and so
does the batch executor for each line it runs for a key (service.batch_lines): one definition of a key's
standing, however the request arrived.
"""

from __future__ import annotations

import time

import anyio

from cfai_cli.errors import RateLimited
from cfai_cli.service.record import RequestRecord
from cfai_cli.store.keys import KeyRecord
from cfai_cli.store.limits import RateLimiter


def grant(request: RequestRecord, key: KeyRecord, limiter: RateLimiter) -> None:
    """The router and services judge the request on its record, after defaults, aliases and routes have made
    it what actually runs; a request that fans out charges its other upstream calls to the key's limits."""
    request.key_id = key.id
    request.model_patterns = key.policy.models
    if key.policy.limited:
        async def charge(calls: int) -> None:
            decision = await anyio.to_thread.run_sync(
                lambda: limiter.admit(key.id, key.policy, now=time.time(), units=calls))
            if not decision.allowed:
                error = RateLimited(f"Rate limit reached: {decision.reason}. This request needs {calls} more "
                                    f"upstream calls. Try again in {decision.retry_after:.0f} s.",
                                    retry_after=decision.retry_after, code="rate_limit_exceeded")
                error.headers = decision.headers
                raise error

        request.charge = charge
