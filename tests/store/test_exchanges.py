"""store.exchanges: the exchange log's rows, filters and retention."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from cfai_cli.store.db import connect
from cfai_cli.store.exchanges import Exchange, ExchangeLog, Retention


def exchange(cid: str, prompt: str, ts: float, answer: str = "ok") -> Exchange:
    return Exchange(cid=cid, ts=ts, api="chat", model_asked="m", model="@cf/m", system=None, prompt=prompt,
                    messages=[{"role": "user", "content": prompt}], answer=answer)


def test_rows_round_trip_and_filters(tmp_path: Path) -> None:
    log = ExchangeLog(tmp_path / "logs.db")
    assert log.recent(limit=None) == [] and log.latest_cid() is None and log.counts() == (0, 0)
    for i, (cid, prompt) in enumerate([("aaaa01", "50% off"), ("bbbb02", "under_score"), ("aaaa01", "plain")]):
        log.add(exchange(cid, prompt, 100.0 + i), Retention(), now=100.0 + i)
    everything = log.recent(limit=None)
    assert [x.prompt for x in everything] == ["50% off", "under_score", "plain"]
    assert everything[0].messages == [{"role": "user", "content": "50% off"}] and everything[0].id == 1
    assert [x.prompt for x in log.recent(limit=2)] == ["under_score", "plain"]
    assert [x.prompt for x in log.recent(limit=None, query="%")] == ["50% off"]
    assert [x.prompt for x in log.recent(limit=None, query="_")] == ["under_score"]
    assert [x.prompt for x in log.recent(limit=None, query="PLAIN")] == ["plain"]
    assert [x.prompt for x in log.conversation("aaaa01")] == ["50% off", "plain"]
    assert [x.prompt for x in log.recent(limit=None, since=101.0)] == ["under_score", "plain"]
    assert log.latest_cid() == "aaaa01" and log.counts() == (3, 2)
    assert log.cids_starting("aaaa") == ["aaaa01"] and log.cids_starting("a%") == []


def test_retention_caps_rows_and_age(tmp_path: Path) -> None:
    log = ExchangeLog(tmp_path / "logs.db")
    for i in range(5):
        log.add(exchange("c", f"p{i}", float(i)), Retention(max_rows=3), now=float(i))
    assert [x.prompt for x in log.recent(limit=None)] == ["p2", "p3", "p4"]
    log.add(exchange("c", "late", 10 * 86400.0), Retention(max_rows=0, days=7), now=10 * 86400.0)
    assert [x.prompt for x in log.recent(limit=None)] == ["late"]


def test_a_write_reaches_logs_db_when_the_last_connection_closes(tmp_path: Path) -> None:
    """The log's commits are not synced one by one (synchronous=NORMAL): the last connection's close checkpoints
    them into logs.db (and syncs it), also when that last one is another process's reader; the WAL stays the
    journal, so a reader open beside the writer sees the row as soon as it is committed."""
    path = tmp_path / "logs.db"
    log = ExchangeLog(path)
    log.add(exchange("c1", "first", 1.0), Retention(), now=1.0)
    assert not (tmp_path / "logs.db-wal").exists()  # the writer was the last: checkpointed, the WAL removed
    with closing(sqlite3.connect(path)) as reader:  # as `sqlite3 "$(cfai logs path)"` or another cfai would
        assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert reader.execute("SELECT prompt FROM exchanges").fetchall() == [("first",)]
        log.add(exchange("c1", "second", 2.0), Retention(), now=2.0)
        assert (tmp_path / "logs.db-wal").exists()  # the reader is still open: no checkpoint yet
        assert reader.execute("SELECT prompt FROM exchanges ORDER BY id").fetchall() == [("first",), ("second",)]
    assert not (tmp_path / "logs.db-wal").exists()  # the reader's close was the last: checkpointed
    assert [x.prompt for x in ExchangeLog(path).recent(limit=None)] == ["first", "second"]


def test_only_the_log_trades_the_per_commit_sync(tmp_path: Path) -> None:
    with ExchangeLog(tmp_path / "logs.db")._connect() as conn:
        assert conn.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    with connect(tmp_path / "other.db", "CREATE TABLE IF NOT EXISTS t (x INTEGER)") as conn:
        assert conn.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL, SQLite's default, for the others
