"""server.meter.AccountMeter: each reading adds the usage rows written since the last one to the day's totals,
and a new UTC day starts from nothing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import cast

import pytest

from cfai_cli.core.cost import day_start
from cfai_cli.server.meter import AccountMeter
from cfai_cli.server.recorder import UsageRecorder
from cfai_cli.store.usage import UsageLog, UsageRow

pytestmark = pytest.mark.anyio


class Recorder:
    """What the meter reads of the recorder: batches written, and totals not yet written (none here)."""

    def __init__(self) -> None:
        self.written = 0
        self.writing: dict[str, float] = {}
        self.pending: dict[str, float] = {}


def row(ts: float, account: str, neurons: float) -> UsageRow:
    return UsageRow(ts=ts, key_id=None, route="chat/completions", model="m", upstream_model="m", status=200,
                    prompt_tokens=1, completion_tokens=1, latency_ms=1.0, bytes_in=1, bytes_out=1, error_code=None,
                    neurons=neurons, account=account)


async def test_readings_add_the_new_rows_to_the_days_totals(database: Path | str) -> None:
    """SQLite: each reading adds the rows after the last row id read; PostgreSQL (whose ids are not commit-ordered):
    each reading is the day's totals per account, kept beside the rows. The same answers either way."""
    log, recorder = UsageLog(database), Recorder()
    meter = AccountMeter(log, cast(UsageRecorder, recorder), refresh=3600)
    now = time.time()
    log.write([row(day_start(now) - 5, "main", 999.0), row(now, "main", 10.0), row(now, "backup", 1.0)])
    recorder.written = 1
    assert await meter.today(now) == {"main": 10.0, "backup": 1.0}  # yesterday's row not counted
    log.write([row(now, "main", 5.0)])
    recorder.written = 2
    assert await meter.today(now) == {"main": 15.0, "backup": 1.0}
    assert await meter.today(now) == {"main": 15.0, "backup": 1.0}  # no new batch, within the refresh: as read
    tomorrow = day_start(now) + 86_400 + 1
    log.write([row(tomorrow, "main", 2.0)])
    recorder.written = 3
    assert await meter.today(tomorrow) == {"main": 2.0}

