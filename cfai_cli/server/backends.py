"""What /health says of the shared backends a gateway's replicas use: the `[store]` PostgreSQL server and the
`[coordination]` Redis, each probed with one round trip (`ok` or `unavailable`, and where: host:port only,
never a URL, which may hold a password). A single host (no urls) has neither, and /health reads nothing more.

Imports stdlib, anyio, errors and store; the PostgreSQL and Redis clients are the ones the app already holds.
"""

from __future__ import annotations

from typing import Any

import anyio

from cfai_cli.errors import CfaiError
from cfai_cli.store.coordination import Coordinated
from cfai_cli.store.redis_outage import errors
from cfai_cli.store.sql import Database

PROBE_SECONDS = 2.0  # a probe that takes longer than this says `unavailable` (a load balancer waits on /health)


class Backends:
    def __init__(self, store: Database | None, coordinated: Coordinated | None) -> None:
        self.store = store
        self.coordinated = coordinated

    def __bool__(self) -> bool:
        return self.store is not None or self.coordinated is not None

    async def report(self) -> dict[str, dict[str, str]]:
        """{"store": {"status", "at"}, "coordination": {"status", "at"}}, for the backends configured."""
        found: dict[str, dict[str, str]] = {}
        if self.store is not None:
            found["store"] = {"status": await self._store(self.store), "at": self.store.label}
        if self.coordinated is not None:
            found["coordination"] = {"status": await self._redis(self.coordinated.remote.client),
                                     "at": self.coordinated.outage.place}
        return found

    @staticmethod
    async def _store(store: Database) -> str:
        def probe() -> None:
            with store.transaction() as tx:
                tx.execute("SELECT 1").fetchall()

        with anyio.move_on_after(PROBE_SECONDS):
            try:
                await anyio.to_thread.run_sync(probe, abandon_on_cancel=True)
            except CfaiError:  # StoreUnavailable, or a database that refuses us (ConfigError)
                return "unavailable"
            return "ok"
        return "unavailable"

    @staticmethod
    async def _redis(client: Any) -> str:
        with anyio.move_on_after(PROBE_SECONDS):
            try:
                await client.ping()
            except errors():
                return "unavailable"
            return "ok"
        return "unavailable"
