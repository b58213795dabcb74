"""Retention in a running proxy: old usage rows, stored responses and expired cached answers deleted once the
server is up, then hourly.

Imports anyio, settings and store. Each pass runs in a worker thread (never on the event loop) and
deletes at most `store.retention.PASS_BUDGET` rows, in short transactions; what is left over goes at the
next pass. A failing pass is logged and the proxy goes on. The retention module (and the batches, files and
blob stores it prunes) and the response cache's store are imported by the first pass, which server.app starts
with its warm-up, after the first /health answer: ~60 M instructions, 4 % of `cfai serve`'s start-up to that
answer (callgrind, issue 25, 2026-12-02), that a pass a second later does not need sooner.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from cfai_cli.settings import Settings

if TYPE_CHECKING:
    from cfai_cli.store.cache import CacheStore
    from cfai_cli.store.retention import Pruned

log = logging.getLogger("cfai.server")
INTERVAL = 3600.0


def _prune(settings: Settings) -> Pruned:
    """One retention pass (in a worker thread)."""
    from cfai_cli.store.retention import prune, retention_of

    return prune(settings.database, retention_of(settings), now=time.time(), store=settings.storage)


class Housekeeping:
    def __init__(self, settings: Settings, *, interval: float = INTERVAL,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self.last: Pruned | None = None
        self._cache: CacheStore | None = None
        self.clock = clock
        self.cache_pruned = 0

    async def run_once(self) -> Pruned | None:
        """One pass: what it deleted (also in `last`), or None when it failed."""
        try:
            pruned = await anyio.to_thread.run_sync(_prune, self.settings)
        except Exception as exc:  # a locked or broken database must not take the proxy down
            log.error("retention pass failed: %s", exc)
            return None
        if pruned.usage_rows or pruned.responses:
            log.info("retention: deleted %d usage rows and %d stored responses", pruned.usage_rows, pruned.responses)
        self.last = pruned
        await self.prune_cache()
        return pruned

    async def prune_cache(self) -> int:
        """Expired response-cache entries (writes delete some as they go; this catches a quiet cache)."""
        if not self.settings.cache.enabled:
            return 0
        try:
            expired = await anyio.to_thread.run_sync(self._prune_cache)
        except Exception as exc:  # as above: the proxy goes on
            log.error("response cache pass failed: %s", exc)
            return 0
        if expired:
            log.info("response cache: deleted %d expired answers", expired)
        self.cache_pruned = expired
        return expired

    def _prune_cache(self) -> int:
        if self._cache is None:
            from cfai_cli.store.cache import CacheStore

            self._cache = CacheStore(self.settings.storage)
        return self._cache.prune(now=self.clock())

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
