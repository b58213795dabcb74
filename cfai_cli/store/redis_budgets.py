"""Per-key budgets in Redis, shared by every replica of a gateway (`[coordination] url`; docs/cost.md, "Budgets").

Imports stdlib, redis-py, core and store; imported only when coordination is configured (store.coordination).
Per key (one hash tag, so a key's data sits in one slot): the neurons spent today and this month (two counters
named by their UTC day and month), and the holds of its requests in flight (a sorted set of hold ids scored by
their expiry, beside a hash of what each holds). Per model: its running mean cost per call.
One Lua script per hold measures the key's spend and live holds (expired ones are dropped and never count),
applies core.budgets' rule and records the hold if it fits; one per settle drops the hold, adds the real cost to
both counters and lets the model's mean learn. Redis runs a script alone, so no two replicas can both take what
is left of a budget. Python judges the measurement the script returns with core.budgets.judge (the refusal's
words, its retry time) and checks the script decided the same.
The durable ledger (store.budgets.BudgetLedger, the store every replica shares) stays the record: a settle
writes it too, and a counter Redis lost (a fresh or restarted Redis, an expired key) is reseeded from it with
SET NX, so N replicas reseeding at once set it once rather than adding it N times (LiteLLM's rule). A settle
that finds a counter (or the mean) gone leaves it gone: the durable write it makes next carries the cost into
the reseed. (A reseed that reads the durable ledger in the instant between another replica's settle script and
its durable write misses that one request's cost: only just after Redis lost its keys, one request at most each.)
Numbers travel as repr() / %.17g strings: Lua's own printing keeps 14 digits, and Redis turns a Lua number in a
reply into an integer.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from redis.asyncio import Redis
from redis.exceptions import RedisError

from cfai_cli.core.budgets import MEAN_WEIGHT, Refusal, estimate, judge, month_neurons, next_month_start, slack
from cfai_cli.core.cost import DAY, day_start
from cfai_cli.store.budgets import Budget, Durable, buckets

PREFIX = "cfai:bg:"
SETTLE_ATTEMPTS = 3
SETTLED_KEEP = 3600.0  # seconds a hold's "settled" mark is kept: longer than any retry of its settle
MEAN_KEEP = 40 * DAY  # a model's mean outlives a month without requests; the durable ledger reseeds it after
_HELPERS = """
local function fmt(x) return string.format('%.17g', x) end
local function missing(...)
  for _, key in ipairs({...}) do if redis.call('EXISTS', key) == 0 then return true end end
  return false
end
-- what the live holds of a key hold; expired ones (expiry <= now) are deleted first and never count
local function held(zset, hash, now)
  local dead = redis.call('ZRANGEBYSCORE', zset, '-inf', now)
  if #dead > 0 then
    redis.call('HDEL', hash, unpack(dead))
    redis.call('ZREMRANGEBYSCORE', zset, '-inf', now)
  end
  local sum = 0
  local ids = redis.call('ZRANGE', zset, 0, -1)
  if #ids > 0 then
    for _, v in ipairs(redis.call('HMGET', hash, unpack(ids))) do sum = sum + tonumber(v) end
  end
  return sum
end
"""

# KEYS: day, month, holds zset, holds hash. ARGV: now. -> {1, day, month, held} or {-1} (a counter to reseed).
MEASURE = _HELPERS + """
if missing(KEYS[1], KEYS[2]) then return {-1} end
return {1, redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]), fmt(held(KEYS[3], KEYS[4], ARGV[1]))}
"""

# KEYS: day, month, holds zset, holds hash, model mean. ARGV: now, hold id, calls, fallback per call, expiry,
# day budget, its slack, month budget (neurons), its slack ('' for no such budget), how long the holds are kept (ms).
# -> {admitted 1/0, day, month, held, mean ('' none), wanted} or {-1} (a counter or the mean to reseed).
HOLD = _HELPERS + """
if missing(KEYS[1], KEYS[2], KEYS[5]) then return {-1} end
local day, month = tonumber(redis.call('GET', KEYS[1])), tonumber(redis.call('GET', KEYS[2]))
local h = held(KEYS[3], KEYS[4], ARGV[1])
local mean = redis.call('GET', KEYS[5])
local per = tonumber(ARGV[4])
if mean ~= '' then per = tonumber(mean) end
local wanted = tonumber(ARGV[3]) * per
-- core.budgets.fits, word for word: within the budget, and something left
local function fits(total, budget, margin)
  if budget == '' then return true end
  budget, margin = tonumber(budget), tonumber(margin)
  return total < budget - margin and total + wanted <= budget + margin
end
local admitted = 0
if fits(day + h, ARGV[6], ARGV[7]) and fits(month + h, ARGV[8], ARGV[9]) then
  admitted = 1
  local before = tonumber(redis.call('HGET', KEYS[4], ARGV[2]) or '0')
  redis.call('HSET', KEYS[4], ARGV[2], fmt(before + wanted))
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[2])
  for i = 3, 4 do
    if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[10]) then redis.call('PEXPIRE', KEYS[i], ARGV[10]) end
  end
end
return {admitted, fmt(day), fmt(month), fmt(h), mean, fmt(wanted)}
"""

# KEYS: day, month, holds zset, holds hash, model mean, the hold's "settled" mark. ARGV: hold id ('' none), cost
# ('' unknown), calls (0: the mean learns nothing), the mean's weight, how long the mean is kept, how long the
# mark is (ms). The mark makes a settle retried after a lost reply count once.
SETTLE = """
if ARGV[1] ~= '' then
  if not redis.call('SET', KEYS[6], '1', 'NX', 'PX', ARGV[6]) then return 0 end
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('HDEL', KEYS[4], ARGV[1])
end
if ARGV[2] == '' then return 0 end
local cost = tonumber(ARGV[2])
if cost > 0 then
  for i = 1, 2 do
    local v = redis.call('GET', KEYS[i])
    if v then redis.call('SET', KEYS[i], string.format('%.17g', tonumber(v) + cost), 'KEEPTTL') end
  end
end
local calls = tonumber(ARGV[3])
if calls > 0 then
  local per, w = cost / calls, tonumber(ARGV[4])
  local mean = redis.call('GET', KEYS[5])
  -- core.budgets.running_mean; a mean Redis lost stays lost (the durable ledger learns this cost and reseeds it)
  if mean then
    if mean ~= '' then local m = tonumber(mean); per = m + w * (per - m) end
    redis.call('SET', KEYS[5], string.format('%.17g', per), 'PX', ARGV[5])
  end
end
return 1
"""

# KEYS: day, month[, model mean]. ARGV: their durable values ('' for a mean never learnt), then how long each is
# kept (ms: relative to the caller's clock, which may differ from Redis's). SET NX: what another replica seeded
# first stays.
SEED = """
for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[i], 'NX', 'PX', ARGV[i + #KEYS]) end
return 1
"""


def _number(value: Any) -> float:
    return float(value.decode() if isinstance(value, bytes) else value)


def _limit(budget: float | None) -> list[str]:
    return ["", ""] if budget is None else [repr(budget), repr(slack(budget))]


class RedisBudgets:
    """`Budgets` in Redis over the durable ledger (the host's BudgetLedger, or SpendStore on PostgreSQL); Redis
    errors (redis.RedisError, OSError) are the caller's (store.coordination.CoordinatedBudgets)."""

    def __init__(self, client: Redis, durable: Durable, prefix: str = PREFIX) -> None:
        self.client = client
        self.durable = durable
        self.prefix = prefix
        self._measure = client.register_script(MEASURE)  # EVALSHA, loading the script again after a restart
        self._hold = client.register_script(HOLD)
        self._settle = client.register_script(SETTLE)
        self._seed = client.register_script(SEED)

    def keys(self, key_id: str, now: float, model: str | None = None) -> list[str]:
        """day, month, holds zset, holds hash [, model mean]; `{key_id}` is a Redis Cluster hash tag."""
        today, first = buckets(now)
        base = f"{self.prefix}{{{key_id}}}"
        names = [f"{base}:d:{today}", f"{base}:m:{first}", f"{base}:h", f"{base}:hn"]
        return names if model is None else [*names, f"{self.prefix}mean:{model}"]

    async def reseed(self, key_id: str, now: float, model: str | None = None) -> None:
        """Seed what Redis lacks of the key's counters (and the model's mean) from the durable ledger."""
        today, month = await anyio.to_thread.run_sync(lambda: self.durable.spent(key_id, now=now))
        values = [repr(today), repr(month)]
        # a day's counter is read until the day ends, a month's until the month does (a day more for clock skew)
        expiry = [int((day_start(now) + 2 * DAY - now) * 1000), int((next_month_start(now) + DAY - now) * 1000)]
        keys = self.keys(key_id, now)[:2]
        if model is not None:
            mean = await anyio.to_thread.run_sync(lambda: self.durable.mean(model))
            keys.append(self.keys(key_id, now, model)[4])
            values.append("" if mean is None else repr(mean))
            expiry.append(int(MEAN_KEEP * 1000))
        args: list[str | int] = [*values, *expiry]
        await self._seed(keys=keys, args=args)

    async def measure(self, key_id: str, *, now: float) -> tuple[float, float, float]:
        """The key's neurons today, this month, and held by its live holds."""
        for _ in range(3):
            reply = await self._measure(keys=self.keys(key_id, now)[:4], args=[repr(now)])
            if int(reply[0]) == 1:
                return _number(reply[1]), _number(reply[2]), _number(reply[3])
            await self.reseed(key_id, now)
        raise ConnectionError("Redis lost the budget counters again while they were reseeded")

    async def check(self, key_id: str, *, per_day: float | None, per_month_usd: float | None,
                    now: float) -> Refusal | None:
        today, month, held = await self.measure(key_id, now=now)
        return judge(neurons_today=today, neurons_this_month=month, per_day=per_day, per_month_usd=per_month_usd,
                     now=now, held=held)

    async def hold(self, hold_id: str, key_id: str, budget: Budget, *, model: str, calls: int, fallback: float,
                   now: float, expires: float) -> Refusal | None:
        month = None if budget.per_month_usd is None else month_neurons(budget.per_month_usd)
        args: list[str | int] = [repr(now), hold_id, max(0, calls), repr(fallback), repr(expires),
                                 *_limit(budget.per_day), *_limit(month), int((expires - now + 60) * 1000)]
        for _ in range(3):
            reply = await self._hold(keys=self.keys(key_id, now, model), args=args)
            if int(reply[0]) != -1:
                break
            await self.reseed(key_id, now, model)
        else:
            raise ConnectionError("Redis lost the budget counters again while they were reseeded")
        raw_mean = reply[4].decode() if isinstance(reply[4], bytes) else str(reply[4])
        mean = None if raw_mean == "" else float(raw_mean)
        wanted = estimate(mean=mean, fallback=fallback, calls=calls)
        refusal = judge(neurons_today=_number(reply[1]), neurons_this_month=_number(reply[2]),
                        per_day=budget.per_day, per_month_usd=budget.per_month_usd, now=now,
                        held=_number(reply[3]), wanted=wanted)
        # the script's rule and core.budgets' must never differ
        if (refusal is None) != (int(reply[0]) == 1) or wanted != _number(reply[5]):
            raise AssertionError(f"Redis admitted={reply[0]} wanted={reply[5]!r}, but judge says "
                                 f"{refusal is None} for {wanted!r}")
        return refusal

    async def settle(self, hold_id: str | None, key_id: str, neurons: float | None, *, model: str | None,
                     calls: int, now: float) -> None:
        """Redis first, the durable ledger second: if Redis fails, the caller writes the durable ledger alone
        (the cost is recorded once either way; the Redis hold then expires)."""
        learns = neurons is not None and model is not None and calls > 0
        args: list[str | int] = [hold_id or "", "" if neurons is None else repr(neurons), calls if learns else 0,
                                 repr(MEAN_WEIGHT), int(MEAN_KEEP * 1000), int(SETTLED_KEEP * 1000)]
        keys = [*self.keys(key_id, now, model or ""), f"{self.prefix}{{{key_id}}}:s:{hold_id or ''}"]
        for attempt in range(SETTLE_ATTEMPTS):  # a settle left undone holds the key's budget until the hold expires
            try:
                await self._settle(keys=keys, args=args)
                break
            except (ConnectionError, OSError, TimeoutError, RedisError):
                if attempt == SETTLE_ATTEMPTS - 1:
                    raise
        # also drops a hold this request made on the durable ledger while Redis was unreachable (on_failure open)
        await self.durable.settle(hold_id, key_id, neurons, model=model, calls=calls, now=now)

    async def close(self) -> None:
        await self.client.aclose()
