"""The rate limiter a server process uses, chosen by `[coordination]`: the host's SQLite limiter (the default), or
Redis's shared one behind `Coordinated`, which decides what happens while Redis cannot be reached.

Imports stdlib, errors, settings and store; redis-py only when a url is set (the default path never loads it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from cfai_cli.core.coordination import OnFailure, redis_place
from cfai_cli.errors import CoordinationUnavailable
from cfai_cli.settings import Settings
from cfai_cli.store.hot import HotPath
from cfai_cli.store.keys import KeyPolicy
from cfai_cli.store.limits import Decision, RateLimiter, RateLimits

if TYPE_CHECKING:
    from cfai_cli.store.redis_cache import RedisCache
    from cfai_cli.store.redis_cooldowns import RedisRests
    from cfai_cli.store.redis_limits import RedisRateLimits

log = logging.getLogger("cfai.coordination")
WARN_EVERY = 10.0  # seconds between two warnings that Redis is unreachable (per process)


class Coordinated:
    """`RateLimits` in Redis; while Redis fails, `on_failure` "closed" refuses (CoordinationUnavailable, a 503)
    and "open" admits on `local`, this host's own limiter, so one replica still cannot run away, with a loud
    warning at most every WARN_EVERY seconds. Tokens a finished request spent are never an error."""

    def __init__(self, remote: RedisRateLimits, local: RateLimits, *, on_failure: OnFailure, place: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.remote, self.local = remote, local
        self.on_failure = on_failure
        self.place = place  # host:port for messages, never the URL (it may hold a password)
        self.clock = clock
        self.failures = 0
        self._warned: float | None = None

    def _failed(self, exc: Exception, what: str) -> None:
        self.failures += 1
        now = self.clock()
        if self._warned is None or now - self._warned >= WARN_EVERY:
            self._warned = now
            then = ("requests are refused (on_failure = closed)" if self.on_failure == "closed"
                    else "requests are admitted on this process's own limits (on_failure = open)")
            log.warning("COORDINATION UNAVAILABLE: Redis at %s failed to %s (%s: %s); %s; %d failures so far",
                        self.place, what, type(exc).__name__, exc, then, self.failures)

    async def admit(self, key_id: str, policy: KeyPolicy, *, now: float, units: int = 1) -> Decision:
        try:
            return await self.remote.admit(key_id, policy, now=now, units=units)
        except (ConnectionError, OSError, TimeoutError, _redis_error()) as exc:
            self._failed(exc, "check a rate limit")
            if self.on_failure == "closed":
                raise CoordinationUnavailable(f"Rate limits cannot be checked: Redis at {self.place} is "
                                              "unreachable. Try again shortly.", retry_after=1.0) from None
            return await self.local.admit(key_id, policy, now=now, units=units)

    async def record_tokens(self, key_id: str, tokens: int, *, now: float) -> None:
        try:
            await self.remote.record_tokens(key_id, tokens, now=now)
        except (ConnectionError, OSError, TimeoutError, _redis_error()) as exc:
            self._failed(exc, "count tokens")
            if self.on_failure == "open":
                await self.local.record_tokens(key_id, tokens, now=now)

    async def close(self) -> None:
        await self.remote.close()


def _redis_error() -> type[Exception]:
    from redis.exceptions import RedisError

    return RedisError


def rate_limits(settings: Settings, hot: HotPath) -> tuple[RateLimits, Coordinated | None]:
    """The process's limiter, and the Redis one to close at shutdown (None without `[coordination] url`)."""
    local = RateLimiter(settings.database, hot)
    url = settings.coordination.url
    if url is None:
        return local, None
    from cfai_cli.store.redis_limits import RedisRateLimits, connect

    shared = Coordinated(RedisRateLimits(connect(url)), local, on_failure=settings.coordination.on_failure,
                         place=redis_place(url))
    return shared, shared


def shared_parts(coordinated: Coordinated | None) -> tuple[RedisRests, RedisCache] | None:
    """The router's rests and the response cache's hot path in the limits' Redis, through the same client (one
    bounded pool per process); None without `[coordination] url`. Both fail open whatever `on_failure` says:
    a rest only steers failover and a cached answer only saves a call, neither guards anything."""
    if coordinated is None:
        return None
    from cfai_cli.store.redis_cache import RedisCache
    from cfai_cli.store.redis_cooldowns import RedisRests
    from cfai_cli.store.redis_outage import Outage

    client, place = coordinated.remote.client, coordinated.place
    rests = RedisRests(client, Outage("router cooldowns", place, "failover follows this process's own cooldowns"))
    cache = RedisCache(client, Outage("the response cache", place, "answers are neither served from nor stored "
                                      "in the cache (misses)"))
    return rests, cache
