"""What each Cloudflare account has spent today, for the router's daily caps (`[upstreams.NAME] daily_neurons`).

Imports anyio, core and store, and server.observe's recorder. The usage log holds every worker's rows; it is
read at most once a second (in a worker thread), each reading adding only the rows written since the last
(a day's rows are never summed again: with 300k rows that took ~300 ms a second, every request waiting), and
this process's rows not yet written (the recorder's
`pending` and `writing` totals) are added on top, so this worker sees its own spend at once and the others'
within about two seconds (their recorders write once a second). docs/cost.md says how soft the caps are.
On PostgreSQL ([store] url) row ids are not commit-ordered (a replica's row can commit behind a reading that
passed its id), so each reading is instead the day's per-account totals the usage writers keep (store.usage).
"""

from __future__ import annotations

import time

import anyio

from cfai_cli.core.cost import day_start
from cfai_cli.server.recorder import UsageRecorder
from cfai_cli.store.usage import UsageLog

REFRESH = 1.0  # seconds a reading of the usage log is used for


class AccountMeter:
    def __init__(self, usage: UsageLog, recorder: UsageRecorder, *, refresh: float = REFRESH) -> None:
        self.usage = usage
        self.recorder = recorder
        self.refresh = refresh
        self._read: dict[str, float] = {}
        self._read_at = -1.0  # time.monotonic() of the reading
        self._read_day = -1.0  # the UTC day it was for
        self._read_batch = -1  # the recorder's `written` count at the reading
        self._last_row = 0  # the usage log's last row id counted in `_read` (each reading adds only newer rows)
        # Made by the first reading: anyio.Lock() loads anyio's asyncio backend (~2 % of `cfai serve`'s start-up
        # to its first /health answer, cProfile 2026-12-02), which the answer does not need.
        self._lock: anyio.Lock | None = None

    async def today(self, now: float) -> dict[str, float]:
        """Neurons per account since 00:00 UTC: the usage log (cached a second) plus this process's unwritten rows."""
        start = day_start(now)
        if self._stale(start):
            if self._lock is None:
                self._lock = anyio.Lock()
            async with self._lock:  # concurrent requests share one reading
                if self._stale(start):
                    batch = self.recorder.written
                    if self._read_day != start:  # a new UTC day: count from nothing again
                        self._read, self._last_row = {}, 0
                    after = self._last_row
                    added, self._last_row = await anyio.to_thread.run_sync(
                        lambda: self.usage.neurons_by_account(since=start, after=after))
                    if self.usage.shared:  # the day's totals (PostgreSQL: no row id cursor, see store.usage)
                        self._read = dict(added)
                    else:
                        for account, neurons in added.items():
                            self._read[account] = self._read.get(account, 0.0) + neurons
                    self._read_at, self._read_day, self._read_batch = time.monotonic(), start, batch
        spent = dict(self._read)
        for totals in (self.recorder.writing, self.recorder.pending):
            for account, neurons in totals.items():
                spent[account] = spent.get(account, 0.0) + neurons
        return spent

    def _stale(self, start: float) -> bool:
        # A batch written since the reading moved rows from `writing` into the log: read again, or they vanish.
        return (self._read_day != start or self._read_batch != self.recorder.written
                or time.monotonic() - self._read_at >= self.refresh)
