"""What a process does while Redis fails the parts of shared state that may fail open (router rests, the response
cache): a loud warning at most every WARN_EVERY seconds, and no further tries for PAUSE seconds, so a Redis that
is down costs each request nothing (not a connect timeout per request) and comes back on its own.

Imports stdlib only; the callers catch `errors()` (redis-py's own, found on first use: this module loads no redis).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("cfai.coordination")
WARN_EVERY = 10.0  # seconds between two warnings (per process and per part)
PAUSE = 1.0  # seconds without a try after a failure


def errors() -> tuple[type[BaseException], ...]:
    """What a Redis call raises when Redis cannot be reached or answers with an error."""
    from redis.exceptions import RedisError

    return (RedisError, ConnectionError, OSError, TimeoutError)


class Outage:
    """The failures of one part (`what`: "router cooldowns", "the response cache") and what they cost."""

    def __init__(self, what: str, place: str, then: str, *, part: str = "coordination",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what, self.place, self.then = what, place, then
        self.part = part  # a short fixed name for metrics: limits, cooldowns, cache
        self.clock = clock
        self.failures = 0
        self.listener: Callable[[str], None] | None = None  # told each failure (server.metrics counts them)
        self._warned: float | None = None
        self._failed_at: float | None = None

    def paused(self) -> bool:
        """Whether a failure was so recent that Redis is not tried again yet."""
        return self._failed_at is not None and self.clock() - self._failed_at < PAUSE

    def failed(self, exc: BaseException, action: str | None = None) -> None:
        """Count a failure (of `action`, e.g. "hold a budget", when the part does several things); warn if due."""
        self.failures += 1
        if self.listener is not None:
            self.listener(self.part)
        now = self._failed_at = self.clock()
        if self._warned is None or now - self._warned >= WARN_EVERY:
            self._warned = now
            what = f"{self.what} ({action})" if action else self.what
            log.warning("COORDINATION UNAVAILABLE: Redis at %s failed for %s (%s: %s); %s; %d failures so far",
                        self.place, what, type(exc).__name__, exc, self.then, self.failures)

    def recovered(self) -> None:
        self._failed_at = None
