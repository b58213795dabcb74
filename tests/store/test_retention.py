"""store.retention: old usage rows and stored responses go, each table is capped, and a pass is bounded."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cfai_cli.store import retention
from cfai_cli.store.responses import ResponseStore
from cfai_cli.store.retention import DAY, Pruned, Retention, prune
from cfai_cli.store.usage import UsageLog, UsageRow

NOW = 1_800_000_000.0


def row(age_days: float) -> UsageRow:
    return UsageRow(ts=NOW - age_days * DAY, key_id="k", route="chat/completions", model="m", upstream_model="m",
                    status=200, prompt_tokens=1, completion_tokens=1, latency_ms=1.0, bytes_in=1, bytes_out=1,
                    error_code=None)


def ages(path: Path | str) -> list[float]:
    return [round((NOW - r.ts) / DAY, 3) for r in UsageLog(path).rows(since=0)]


def save_responses(path: Path | str, *ages_in_days: float) -> ResponseStore:
    store = ResponseStore(path)
    for i, age in enumerate(ages_in_days):
        store.save({"id": f"resp_{i}", "created_at": int(NOW - age * DAY), "output": []}, [])
    return store


def test_time_limits(tmp_path: Path, database: Path | str) -> None:
    """The usage log and responses in the store's database (SQLite or PostgreSQL) beside the host's file."""
    db, host = database, tmp_path / "host.db"
    UsageLog(db).write([row(a) for a in (200, 91, 89, 1)])
    store = save_responses(db, 45, 31, 29)
    assert prune(host, Retention(usage_days=90, responses_days=30), now=NOW, store=db) == \
        Pruned(usage_rows=2, responses=2)
    assert ages(db) == [89, 1]
    assert [store.get(f"resp_{i}") is not None for i in range(3)] == [False, False, True]
    assert prune(host, Retention(usage_days=90, responses_days=30), now=NOW, store=db) == Pruned()
    # An explicit cut-off (cfai usage --prune --older-than) wins over the usage log's limit.
    assert prune(host, Retention(), now=NOW, usage_before=NOW - 2 * DAY, store=db) == Pruned(usage_rows=1)
    assert ages(db) == [1]


def test_caps_hold_without_a_time_limit(tmp_path: Path, database: Path | str) -> None:
    db, host = database, tmp_path / "host.db"
    UsageLog(db).write([row(a) for a in (500, 400, 3, 2, 1)])
    save_responses(db, 900, 800, 1)
    limits = Retention(usage_days=0, responses_days=0, usage_max_rows=3, responses_max_rows=1)
    assert prune(host, limits, now=NOW, store=db) == Pruned(usage_rows=2, responses=2)
    assert ages(db) == [3, 2, 1]  # the oldest went first
    assert ResponseStore(db).get("resp_2") is not None


def test_a_pass_is_bounded_and_batched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "cfai.db"
    UsageLog(db).write([row(100 + i / 1000) for i in range(25)] + [row(1)])
    monkeypatch.setattr(retention, "BATCH", 4)
    statements: list[str] = []
    real_connect = sqlite3.connect

    def watched(*args: object, **kwargs: object) -> sqlite3.Connection:
        conn = real_connect(*args, **kwargs)  # type: ignore[arg-type]
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(sqlite3, "connect", watched)
    assert prune(db, Retention(), now=NOW, budget=10) == Pruned(usage_rows=10)
    assert sum(s.startswith("DELETE FROM usage_log") for s in statements) == 3  # 4 + 4 + 2, each its own
    assert statements.count("COMMIT") >= 3  # ... transaction
    assert len(ages(db)) == 16
    assert prune(db, Retention(), now=NOW, budget=None) == Pruned(usage_rows=15)
    assert ages(db) == [1]


def test_nothing_to_do_without_a_database(tmp_path: Path) -> None:
    assert prune(tmp_path / "none.db", Retention(), now=NOW) == Pruned()
    assert not (tmp_path / "none.db").exists()


def test_old_spend_goes_from_the_stores_database(tmp_path: Path, database: Path | str) -> None:
    """Key spend of past months is pruned where it lives: the host's file, or the shared PostgreSQL."""
    from cfai_cli.store.budgets import SpendStore

    spend = SpendStore(database)
    spend.add("key_a", 4.0, now=NOW - 60 * DAY)
    spend.add("key_a", 1.0, now=NOW)
    host = database if isinstance(database, Path) else tmp_path / "host.db"
    assert prune(host, Retention(), now=NOW, store=database).budget_days == 1
    assert spend.spent("key_a", now=NOW) == (1.0, 1.0)
