"""store.usage: rows written in batches come back exactly, however many a batch holds."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cfai_cli.store import sql as sql_module
from cfai_cli.store.usage import UsageLog, UsageRow


def row(i: int) -> UsageRow:
    return UsageRow(ts=1_700_000_000.0 + i, key_id=f"key_{i % 7}" if i % 3 else None, route="chat/completions",
                    model="gpt-4o-mini", upstream_model="@cf/meta/llama-3.1-8b-instruct-fast",
                    status=200 if i % 11 else 429, prompt_tokens=i, completion_tokens=2 * i, latency_ms=i / 8,
                    bytes_in=100 + i, bytes_out=500 + i, error_code=None if i % 11 else "rate_limit_exceeded",
                    upstream="cloudflare" if i % 2 else "backup#2")


@pytest.mark.parametrize("count", [1, 499, 500, 501, 2_345])
def test_a_batch_of_any_size_is_stored_whole_and_in_order(database: Path | str, count: int) -> None:
    log = UsageLog(database)
    rows = [row(i) for i in range(count)]
    log.write(rows)
    log.write([])
    assert log.rows(since=0) == rows


def test_an_old_sqlite_with_a_small_variable_limit_still_gets_every_row(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # SQLite before 3.32 allows 999 variables a statement: 76 rows of 13 columns.
    real_connect = sql_module.connect

    def limited(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        manager = real_connect(*args, **kwargs)  # type: ignore[arg-type]

        class Limited:
            def __enter__(self) -> sqlite3.Connection:
                conn = manager.__enter__()
                conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
                return conn

            def __exit__(self, *exc: object) -> object:
                return manager.__exit__(*exc)  # type: ignore[arg-type]

        return Limited()

    monkeypatch.setattr(sql_module, "connect", limited)
    log = UsageLog(tmp_path / "cfai.db")
    rows = [row(i) for i in range(300)]
    log.write(rows)
    assert log.rows(since=0) == rows
