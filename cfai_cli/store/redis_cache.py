"""The response cache's hot path in Redis, shared by every replica of a gateway (`[coordination] url`;
docs/cache.md): an answer stored on one replica is served by the others.

Imports stdlib, store and redis-py (through the client it is given); imported only when coordination is configured.
An entry is `SET cfai:cache:{tenant}:{key} <entry> PX <ttl>`: the tenant (the key id; "" without keys) is in
the Redis key as well as in the hashed cache key, and a read asks for the request's own tenant's key only, so no
tenant reads another's answers. Redis forgets an entry at its TTL; what all entries may hold together is Redis's
`maxmemory` (and its eviction policy), the operator's setting, while each request writes at most
`max_entry_bytes` (the caller's bound, as on SQLite). Redis failing is a miss and nothing stored, never an error
for the client (store.redis_outage: a warning, a pause before the next try).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from cfai_cli.core.coordination import redis_place
from cfai_cli.errors import CoordinationUnavailable
from cfai_cli.store.cache import CacheStats, Entry
from cfai_cli.store.redis_outage import Outage, errors

T = TypeVar("T")

PREFIX = "cfai:cache:"
VERSION = b"1\n"  # an entry: VERSION, the model that answered, "\n", the answer's JSON
SCAN_COUNT = 1000  # keys a SCAN step looks at (stats and clear walk the prefix; the hot path never scans)


def _pattern(tenant: str | None) -> str:
    """A SCAN pattern for one tenant's entries (glob characters in the id escaped), or for all."""
    if tenant is None:
        return f"{PREFIX}*"
    escaped = "".join(f"\\{c}" if c in "*?[]\\" else c for c in tenant)
    return f"{PREFIX}{escaped}:*"


class RedisCache:
    """The cache's entries in Redis; get and put never raise (a failure is noted by `outage`)."""

    def __init__(self, client: Any, outage: Outage | None = None) -> None:
        self.client = client
        self.outage = outage

    def _key(self, key: str, tenant: str) -> str:
        return f"{PREFIX}{tenant}:{key}"

    def _failed(self, exc: BaseException) -> None:
        if self.outage is not None:
            self.outage.failed(exc)

    async def get(self, key: str, *, tenant: str) -> Entry | None:
        if self.outage is not None and self.outage.paused():
            return None
        try:
            raw = await self.client.get(self._key(key, tenant))
        except errors() as exc:
            self._failed(exc)
            return None
        if self.outage is not None:
            self.outage.recovered()
        if not isinstance(raw, bytes) or not raw.startswith(VERSION):
            return None  # none, or another version's entry: a miss
        model, _, body = raw[len(VERSION):].partition(b"\n")
        return Entry(body, model.decode() or None)

    async def put(self, key: str, body: bytes, *, tenant: str, model: str | None, ttl: float) -> None:
        if ttl <= 0 or (self.outage is not None and self.outage.paused()):
            return
        value = VERSION + (model or "").replace("\n", " ").encode() + b"\n" + body
        try:
            await self.client.set(self._key(key, tenant), value, px=max(1, int(ttl * 1000)))
        except errors() as exc:
            self._failed(exc)

    async def stats(self) -> CacheStats:
        """Live entries and their bytes (Redis has already forgotten expired ones); errors are the caller's."""
        entries = size = 0
        async for batch in self._batches(None):
            async with self.client.pipeline(transaction=False) as pipe:
                for name in batch:
                    pipe.strlen(name)
                lengths = await pipe.execute()
            entries += sum(1 for n in lengths if n)
            size += sum(int(n) for n in lengths)
        return CacheStats(entries, size, 0)

    async def clear(self, *, tenants: list[str] | None = None) -> int:
        """Delete every entry, or those of `tenants`; errors are the caller's."""
        deleted = 0
        for tenant in tenants if tenants is not None else [None]:
            async for batch in self._batches(tenant):
                deleted += int(await self.client.unlink(*batch))
        return deleted

    async def _batches(self, tenant: str | None) -> Any:
        batch: list[Any] = []
        async for name in self.client.scan_iter(match=_pattern(tenant), count=SCAN_COUNT):
            batch.append(name)
            if len(batch) >= SCAN_COUNT:
                yield batch
                batch = []
        if batch:
            yield batch


def run_on(url: str, action: Callable[[RedisCache], Awaitable[T]]) -> T:
    """`action` on the cache in the Redis at `url`, for the CLI (`cfai cache stats|clear`); a Redis that cannot
    be reached is a CoordinationUnavailable naming its host (never the URL: it may hold a password)."""
    import asyncio

    from cfai_cli.store.redis_limits import connect

    async def run() -> T:
        client = connect(url)
        try:
            return await action(RedisCache(client))
        except errors() as exc:
            raise CoordinationUnavailable(f"The response cache is in Redis at {redis_place(url)} ([coordination] "
                                          f"url), which cannot be reached ({type(exc).__name__}).") from None
        finally:
            await client.aclose()

    return asyncio.run(run())
