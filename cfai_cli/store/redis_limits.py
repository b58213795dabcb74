"""Per-key rate limits in Redis, shared by every replica of a gateway (`[coordination] url`; docs/configuration.md).

Imports stdlib, redis-py and store; imported only when coordination is configured (server.app). The same exact
sliding windows as store.limits, in two sorted sets per key (requests, tokens): each entry is scored by its time
and named by the key's running total of its kind ("<total, zero-padded>:<units>"), so what a window holds is the
newest total minus the total before its oldest entry: two O(log n) lookups however busy the key. One Lua script
measures the windows, applies the admission rule and records the request, and Redis runs a script alone, so no
two replicas can both take the last unit. The script returns what it measured, and store.limit_rule.decide builds the
same Decision (reason, retry_after, x-ratelimit-* headers) as the SQLite limiter from it.
Times are the caller's clock (the RateLimits contract), passed as repr() strings: Lua numbers print with 14
significant digits, too few for a Unix time in microseconds. An entry is never placed before the key's newest
one (as in store.limits), so totals stay in time order when replicas' clocks differ slightly.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from cfai_cli.store.keys import KeyPolicy
from cfai_cli.store.limit_rule import DAY, MINUTE, UNMEASURED, Decision, Window, decide

TIMEOUT = 0.25  # seconds to answer: a slow Redis must not stall every request
# seconds to open a socket: once per pooled connection, and a refused port fails at once anyway; 0.25 s timed out
# on a loaded host whose event loop was busy with a burst opening the pool's connections together
CONNECT_TIMEOUT = 1.0
MAX_CONNECTIONS = 16  # sockets per process; one admission holds one for a single EVALSHA round trip
POOL_WAIT = 5.0  # seconds a request waits for a free connection before it counts as Redis failing
PREFIX = "cfai:rl:"

# Shared by both scripts: the newest entry's (score string, total), and what a window newer than `since` holds.
_HELPERS = """
local function last(key)
  local r = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if #r == 0 then return nil, nil, 0 end
  return r[2], tonumber(r[2]), tonumber(string.match(r[1], '^(%d+):'))
end
local function window(key, since, total)
  local r = redis.call('ZRANGEBYSCORE', key, '(' .. since, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if #r == 0 then return 0, false end
  local t, u = string.match(r[1], '^(%d+):(%d+)$')
  return total - (tonumber(t) - tonumber(u)), r[2]
end
local function record(key, now_s, units, keep_ms)
  local last_s, last_n, total = last(key)
  local at = now_s
  if last_n ~= nil and last_n > tonumber(now_s) then at = last_s end
  redis.call('ZADD', key, at, string.format('%020d:%d', total + units, units))
  redis.call('PEXPIRE', key, keep_ms)
end
"""

# KEYS: requests zset, tokens zset. ARGV: now, units, rpm, rpd, tpm (-1: none), now-60 s, now-1 day,
# the oldest time the requests zset keeps, its expiry (ms). Returns {admitted, minute used, its oldest time,
# day used, its oldest, tokens used, their oldest}; times as strings, false (nil) for an empty window.
ADMIT = _HELPERS + """
local now_s, units = ARGV[1], tonumber(ARGV[2])
local rpm, rpd, tpm = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local _, _, total = last(KEYS[1])
local mu, mo, du, dold, tu, tol = 0, false, 0, false, 0, false
if rpm >= 0 then mu, mo = window(KEYS[1], ARGV[6], total) end
if rpd >= 0 then du, dold = window(KEYS[1], ARGV[7], total) end
if tpm >= 0 then
  local _, _, ttotal = last(KEYS[2])
  tu, tol = window(KEYS[2], ARGV[6], ttotal)
end
-- store.limit_rule.decide's rule, word for word
local refused = (rpm >= 0 and mu + units > rpm) or (rpd >= 0 and du + units > rpd) or (tpm >= 0 and tu >= tpm)
if refused then return {0, mu, mo, du, dold, tu, tol} end
record(KEYS[1], now_s, units, ARGV[9])
-- what no window of the key reads any more (a policy given rpd later counts from here, as in store.limits)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[8])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[6])
return {1, mu, mo, du, dold, tu, tol}
"""

# KEYS: tokens zset. ARGV: now, tokens, now-60 s, expiry (ms).
RECORD_TOKENS = _HELPERS + """
record(KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
return 1
"""


def _limit(value: int | None) -> int:
    return -1 if value is None else value


def _window(used: Any, oldest: Any) -> Window:
    return Window(int(used), None if oldest is None else float(oldest))


def connect(url: str) -> Redis:
    """A client with short timeouts, its connections made on first use (a replica starts while Redis is down).

    At most MAX_CONNECTIONS sockets per process: a burst of requests queues for a free connection (up to
    POOL_WAIT seconds) instead of opening one socket per request, which would exhaust Redis's and the host's
    descriptors and make every admission slower under exactly the load that matters.

    A command that finds its pooled socket dead (Redis restarted since it was opened: the replica's idle
    connections all are) is sent once more on a new one, instead of failing the request; a timeout is not
    retried (the script may have run, and a slow Redis must not stall twice as long)."""
    retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
    pool = BlockingConnectionPool.from_url(url, max_connections=MAX_CONNECTIONS, timeout=POOL_WAIT,
                                           socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=TIMEOUT,
                                           health_check_interval=30, retry=retry)
    client: Redis = Redis.from_pool(pool)  # aclose() closes the pool too
    return client


class RedisRateLimits:
    """`RateLimits` in Redis; errors (redis.RedisError, OSError) are the caller's (server.coordination)."""

    def __init__(self, client: Redis, prefix: str = PREFIX) -> None:
        self.client = client
        self.prefix = prefix
        self._admit = client.register_script(ADMIT)  # EVALSHA, loading the script again after a Redis restart
        self._record = client.register_script(RECORD_TOKENS)

    def _keys(self, key_id: str) -> list[str]:
        # {key_id}: a hash tag, so both sets of a key are in one slot of a Redis Cluster
        return [f"{self.prefix}{{{key_id}}}:r", f"{self.prefix}{{{key_id}}}:t"]

    async def admit(self, key_id: str, policy: KeyPolicy, *, now: float, units: int = 1) -> Decision:
        keep = DAY if policy.rpd is not None else MINUTE
        args: list[str | int] = [repr(now), units, _limit(policy.rpm), _limit(policy.rpd), _limit(policy.tpm),
                                 repr(now - MINUTE), repr(now - DAY), repr(now - keep), int((keep + MINUTE) * 1000)]
        reply = await self._admit(keys=self._keys(key_id), args=args)
        minute = _window(reply[1], reply[2]) if policy.rpm is not None else UNMEASURED
        day = _window(reply[3], reply[4]) if policy.rpd is not None else UNMEASURED
        tokens = _window(reply[5], reply[6]) if policy.tpm is not None else UNMEASURED
        decision = decide(policy, units, now, minute, day, tokens)
        if decision.allowed != bool(reply[0]):  # the script's rule and decide's must never differ
            raise AssertionError(f"Redis admitted={reply[0]} but decide says {decision.allowed}")
        return decision

    async def record_tokens(self, key_id: str, tokens: int, *, now: float) -> None:
        if tokens > 0:
            args: list[str | int] = [repr(now), tokens, repr(now - MINUTE), int(2 * MINUTE * 1000)]
            await self._record(keys=self._keys(key_id)[1:], args=args)

    def record_tokens_now(self, key_id: str, tokens: int, *, now: float) -> bool:
        return tokens <= 0  # a round trip to Redis: always awaited

    async def close(self) -> None:
        await self.client.aclose()
