"""Retention in a running proxy: old usage rows, stored responses and expired cached answers deleted at
start-up, then hourly.

Imports anyio, settings and store. Each pass runs in a worker thread (never on the event loop) and
deletes at most `store.retention.PASS_BUDGET` rows, in short transactions; what is left over goes at the
next pass. A failing pass is logged and the proxy goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import anyio

from cfai_cli.settings import Settings
from cfai_cli.store.cache import CacheStore
from cfai_cli.store.retention import Pruned, prune, retention_of

log = logging.getLogger("cfai.server")
INTERVAL = 3600.0


class Housekeeping:
    def __init__(self, settings: Settings, *, interval: float = INTERVAL,
                 clock: Callable[[], float] = time.time) -> None:
        self.database = settings.database
        self.store = settings.storage
        self.retention = retention_of(settings)
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self.last: Pruned | None = None
        self.cache = CacheStore(settings.storage) if settings.cache.enabled else None
        self.clock = clock
        self.cache_pruned = 0

    async def run_once(self) -> Pruned:
        try:
            pruned = await anyio.to_thread.run_sync(
                lambda: prune(self.database, self.retention, now=time.time(), store=self.store))
        except Exception as exc:  # a locked or broken database must not take the proxy down
            log.error("retention pass failed: %s", exc)
            return Pruned()
        if pruned.usage_rows or pruned.responses:
            log.info("retention: deleted %d usage rows and %d stored responses", pruned.usage_rows, pruned.responses)
        self.last = pruned
        await self.prune_cache()
        return pruned

    async def prune_cache(self) -> int:
        """Expired response-cache entries (writes delete some as they go; this catches a quiet cache)."""
        if self.cache is None:
            return 0
        cache = self.cache
        try:
            expired = await anyio.to_thread.run_sync(lambda: cache.prune(now=self.clock()))
        except Exception as exc:  # as above: the proxy goes on
            log.error("response cache pass failed: %s", exc)
            return 0
        if expired:
            log.info("response cache: deleted %d expired answers", expired)
        self.cache_pruned = expired
        return expired

    async def _loop(self) -> None:
        while True:
            await self.run_once()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
