"""The router's rests in Redis, shared by every replica of a gateway (`[coordination] url`; docs/routing.md).

Imports stdlib, core and redis-py (through the client it is given); imported only when coordination is configured.
A rest is `SET cfai:cool:{lane}:{model or *} <json of core.cooldowns.Rest> PX <its time left>` (LiteLLM's
cooldown_cache shape), so Redis forgets it when it ends; a per-lane sorted set of the resting names (scored by
their end) lets /health list a lane's rests without SCAN. One Lua script publishes a rest only if it ends later
than the one already there (two replicas learning rests of different length keep the longer, as the local table
does). The router reads its chain's candidates with one MGET per request. Redis failing never fails a request:
the router orders by its own table meanwhile (store.redis_outage: a warning, a pause before the next try).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from cfai_cli.core import jsonfast
from cfai_cli.core.cooldowns import Rest
from cfai_cli.store.redis_outage import Outage, errors

PREFIX = "cfai:cool:"  # a rest: PREFIX + lane + ":" + model ('*': the whole lane)
INDEX = "cfai:cooled:"  # a lane's resting names: INDEX + lane

# KEYS: the rest, the lane's index. ARGV: model or '*', until, json, ttl ms, now.
REST = """
local old = redis.call('ZSCORE', KEYS[2], ARGV[1])
if old and tonumber(old) >= tonumber(ARGV[2]) and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[5])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
return 1
"""


def _rest(raw: Any) -> Rest | None:
    if raw is None:
        return None
    try:
        data = jsonfast.loads(raw)
        return Rest(float(data["until"]), data.get("kind"), data.get("error"), data.get("at"))
    except (ValueError, KeyError, TypeError):  # not ours, or another version's: no rest
        return None


class RedisRests:
    """`upstream.router.SharedRests` in Redis; it never raises (a failure is noted by `outage`)."""

    def __init__(self, client: Any, outage: Outage) -> None:
        self.client = client
        self.outage = outage
        self._rest = client.register_script(REST)

    async def read(self, pairs: Collection[tuple[str, str]]) -> dict[tuple[str, str], Rest] | None:
        wanted = list(dict.fromkeys(p for lane, model in pairs for p in ((lane, model), (lane, "*"))))
        if self.outage.paused():
            return None
        try:
            values = await self.client.mget([f"{PREFIX}{lane}:{model}" for lane, model in wanted])
        except errors() as exc:
            self.outage.failed(exc)
            return None
        self.outage.recovered()
        return {pair: rest for pair, raw in zip(wanted, values, strict=True) if (rest := _rest(raw)) is not None}

    async def rest(self, lane: str, scope: str, rest: Rest, *, now: float) -> None:
        ttl = int((rest.until - now) * 1000)
        if ttl <= 0 or self.outage.paused():
            return
        body = jsonfast.dumps({"until": rest.until, "kind": rest.kind, "error": rest.error, "at": rest.at})
        try:
            await self._rest(keys=[f"{PREFIX}{lane}:{scope}", f"{INDEX}{lane}"],
                             args=[scope, repr(rest.until), body, ttl, repr(now)])
        except errors() as exc:
            self.outage.failed(exc)

    async def clear(self, lane: str, model: str) -> None:
        if self.outage.paused():
            return
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.delete(f"{PREFIX}{lane}:{model}", f"{PREFIX}{lane}:*")
                pipe.zrem(f"{INDEX}{lane}", model, "*")
                await pipe.execute()
        except errors() as exc:
            self.outage.failed(exc)

    async def lanes(self, names: Collection[str], *, now: float) -> dict[str, dict[str, Rest]] | None:
        """Every rest of the `names` lanes that has not ended (for /health and /v1/route-check)."""
        if self.outage.paused():
            return None
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for lane in names:
                    pipe.zrangebyscore(f"{INDEX}{lane}", f"({now!r}", "+inf")
                listed = await pipe.execute()
            pairs = [(lane, m.decode() if isinstance(m, bytes) else str(m))
                     for lane, models in zip(names, listed, strict=True) for m in models]
            values = await self.client.mget([f"{PREFIX}{lane}:{m}" for lane, m in pairs]) if pairs else []
        except errors() as exc:
            self.outage.failed(exc)
            return None
        self.outage.recovered()
        found: dict[str, dict[str, Rest]] = {lane: {} for lane in names}
        for (lane, model), raw in zip(pairs, values, strict=True):
            if (rest := _rest(raw)) is not None:
                found[lane][model] = rest
        return found
