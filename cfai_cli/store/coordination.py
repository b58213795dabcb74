"""The rate limiter and the budget ledger a server process uses, chosen by `[coordination]`: the host's SQLite ones
(the default), or Redis's shared ones behind `Coordinated` / `CoordinatedBudgets`, whose one `Outage` policy
decides what happens while Redis cannot be reached.

Imports stdlib, errors, settings and store; redis-py only when a url is set (the default path never loads it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from cfai_cli.core.budgets import Refusal
from cfai_cli.core.coordination import OnFailure, redis_place
from cfai_cli.errors import CoordinationUnavailable
from cfai_cli.settings import Settings
from cfai_cli.store.budgets import Budget, BudgetLedger, Budgets, Durable, SpendStore
from cfai_cli.store.hot import HotPath
from cfai_cli.store.keys import KeyPolicy
from cfai_cli.store.limit_rule import Decision, RateLimits
from cfai_cli.store.limits import RateLimiter
from cfai_cli.store.redis_outage import Outage as FailureLog
from cfai_cli.store.redis_outage import errors

if TYPE_CHECKING:
    from cfai_cli.store.redis_budgets import RedisBudgets
    from cfai_cli.store.redis_cache import RedisCache
    from cfai_cli.store.redis_cooldowns import RedisRests
    from cfai_cli.store.redis_limits import RedisRateLimits

log = logging.getLogger("cfai.coordination")
T = TypeVar("T")


class Outage:
    """What one process does while Redis fails, for its rate limits and its budgets alike: refuses ("closed":
    CoordinationUnavailable, a 503) or runs the request's step on this host's own store ("open"), so one replica
    still cannot run away. Failures are counted and warned about by the same FailureLog as the parts that always
    fail open (store.redis_outage), with one warning clock for limits and budgets together."""

    def __init__(self, *, on_failure: OnFailure, place: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.on_failure = on_failure
        self.place = place  # host:port for messages, never the URL (it may hold a password)
        then = ("requests are refused (on_failure = closed)" if on_failure == "closed"
                else "requests are admitted on this process's own limits (on_failure = open)")
        self.log = FailureLog("rate limits and budgets", place, then, part="limits", clock=clock)

    @property
    def failures(self) -> int:
        return self.log.failures

    async def guard(self, remote: Callable[[], Awaitable[T]], local: Callable[[], Awaitable[T]], *, what: str,
                    subject: str) -> T:
        """`remote()`; while Redis fails, refused (closed) or `local()` (open). `subject` names what cannot be
        checked in the refusal."""
        try:
            return await remote()
        except errors() as exc:
            self.log.failed(exc, what)
            if self.on_failure == "closed":
                raise CoordinationUnavailable(f"{subject} cannot be checked: Redis at {self.place} is "
                                              "unreachable. Try again shortly.", retry_after=1.0) from None
            return await local()

    async def record(self, remote: Callable[[], Awaitable[None]], local: Callable[[], Awaitable[None]] | None, *,
                     what: str) -> None:
        """What a finished request spent is never an error: `remote()`, else `local()` when there is one."""
        try:
            await remote()
        except errors() as exc:
            self.log.failed(exc, what)
            if local is not None:
                await local()


class Coordinated:
    """`RateLimits` in Redis, with `outage` deciding what a request meets while Redis fails (the local limiter
    admits it when open). Tokens a finished request spent are never an error."""

    def __init__(self, remote: RedisRateLimits, local: RateLimits, *, outage: Outage) -> None:
        self.remote, self.local = remote, local
        self.outage = outage

    async def admit(self, key_id: str, policy: KeyPolicy, *, now: float, units: int = 1) -> Decision:
        return await self.outage.guard(lambda: self.remote.admit(key_id, policy, now=now, units=units),
                                       lambda: self.local.admit(key_id, policy, now=now, units=units),
                                       what="check a rate limit", subject="Rate limits")

    async def record_tokens(self, key_id: str, tokens: int, *, now: float) -> None:
        local = self.local
        await self.outage.record(lambda: self.remote.record_tokens(key_id, tokens, now=now),
                                 (lambda: local.record_tokens(key_id, tokens, now=now))
                                 if self.outage.on_failure == "open" else None, what="count tokens")

    def record_tokens_now(self, key_id: str, tokens: int, *, now: float) -> bool:
        return tokens <= 0  # Redis: always awaited

    async def close(self) -> None:
        await self.remote.close()


class CoordinatedBudgets:
    """`Budgets` in Redis (store.redis_budgets), with the rate limits' `outage` policy: closed refuses a request
    whose budget cannot be checked; open judges it on this host's ledger (`local`, the durable one: with a
    shared store it has every replica's settled spend, only not their holds). A settle that Redis cannot take
    is written to the durable ledger alone, whatever the policy: the cost was spent."""

    def __init__(self, remote: RedisBudgets, local: BudgetLedger, durable: Durable | None = None, *,
                 outage: Outage) -> None:
        self.remote, self.local = remote, local
        self.durable: Durable = local if durable is None else durable
        self.outage = outage

    async def check(self, key_id: str, *, per_day: float | None, per_month_usd: float | None,
                    now: float) -> Refusal | None:
        return await self.outage.guard(
            lambda: self.remote.check(key_id, per_day=per_day, per_month_usd=per_month_usd, now=now),
            lambda: self.local.check(key_id, per_day=per_day, per_month_usd=per_month_usd, now=now),
            what="check a budget", subject="Budgets")

    async def hold(self, hold_id: str, key_id: str, budget: Budget, *, model: str, calls: int, fallback: float,
                   now: float, expires: float) -> Refusal | None:
        def on(ledger: Budgets) -> Callable[[], Awaitable[Refusal | None]]:
            return lambda: ledger.hold(hold_id, key_id, budget, model=model, calls=calls, fallback=fallback,
                                       now=now, expires=expires)

        return await self.outage.guard(on(self.remote), on(self.local), what="hold a budget", subject="Budgets")

    async def settle(self, hold_id: str | None, key_id: str, neurons: float | None, *, model: str | None,
                     calls: int, now: float) -> None:
        async def fallback() -> None:  # the cost goes on the shared record; a hold made here while open goes
            await self.durable.settle(hold_id, key_id, neurons, model=model, calls=calls, now=now)
            if self.durable is not self.local and hold_id is not None:
                await self.local.settle(hold_id, key_id, None, model=None, calls=0, now=now)

        await self.outage.record(
            lambda: self.remote.settle(hold_id, key_id, neurons, model=model, calls=calls, now=now), fallback,
            what="settle a budget")


def rate_limits(settings: Settings, hot: HotPath) -> tuple[RateLimits, Coordinated | None]:
    """The process's limiter, and the Redis one to close at shutdown (None without `[coordination] url`)."""
    local = RateLimiter(settings.database, hot)
    url = settings.coordination.url
    if url is None:
        return local, None
    from cfai_cli.store.redis_limits import RedisRateLimits, connect

    outage = Outage(on_failure=settings.coordination.on_failure, place=redis_place(url))
    shared = Coordinated(RedisRateLimits(connect(url)), local, outage=outage)
    return shared, shared


def shared_parts(coordinated: Coordinated | None) -> tuple[RedisRests, RedisCache] | None:
    """The router's rests and the response cache's hot path in the limits' Redis, through the same client (one
    bounded pool per process); None without `[coordination] url`. Both fail open whatever `on_failure` says:
    a rest only steers failover and a cached answer only saves a call, neither guards anything."""
    if coordinated is None:
        return None
    from cfai_cli.store.redis_cache import RedisCache
    from cfai_cli.store.redis_cooldowns import RedisRests

    client, place = coordinated.remote.client, coordinated.outage.place
    rests = RedisRests(client, FailureLog("router cooldowns", place, "failover follows this process's own cooldowns",
                                       part="cooldowns"))
    cache = RedisCache(client, FailureLog("the response cache", place, "answers are neither served from nor stored "
                                      "in the cache (misses)", part="cache"))
    return rests, cache


def failure_logs(coordinated: Coordinated | None, shared: tuple[RedisRests, RedisCache] | None) -> list[FailureLog]:
    """Every part's FailureLog, for a listener (the metrics' `cfai_coordination_failures_total{part}`)."""
    found = [] if coordinated is None else [coordinated.outage.log]
    if shared is not None:
        found.append(shared[0].outage)
        if shared[1].outage is not None:
            found.append(shared[1].outage)
    return found


def budgets(settings: Settings, hot: HotPath, coordinated: Coordinated | None) -> Budgets:
    """The process's budget ledger: the host's (no `[coordination] url`), else Redis's through the rate limits'
    client (one connection pool, closed with them) and their outage policy (one warning clock a process)."""
    if coordinated is None:
        return BudgetLedger(settings.database, hot)
    from cfai_cli.store.redis_budgets import RedisBudgets

    if settings.store.url is None:  # one host's replicas: its SQLite file is the record they share
        local = BudgetLedger(settings.database, hot)
        durable: Durable = local
    else:  # the store's PostgreSQL tables are the record; judged alone (open), a replica still counts them
        shared = SpendStore(settings.storage)
        durable = shared
        local = BudgetLedger(settings.database, hot, elsewhere=lambda key_id, now: shared.spent(key_id, now=now))
    return CoordinatedBudgets(RedisBudgets(coordinated.remote.client, durable), local, durable,
                              outage=coordinated.outage)
