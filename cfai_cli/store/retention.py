"""Retention: usage rows and stored responses older than their limit are deleted, and each table is capped.

Imports stdlib, settings and store. Work is done in small batches, each its own short write transaction, so a
prune never holds the database lock for long (the proxy's usage writer and the key cache keep going);
`budget` bounds the rows one pass may delete (the server's hourly pass), None deletes everything due
(`cfai usage --prune`). The row caps bound each table whatever the time limits say (0 = no time limit).
The budget ledger keeps only what a budget reads: its days before this calendar month and its expired holds
go on every pass (store.budgets.prune), and so do the rate limits' rows no window reads (store.limits.prune).
Finished batches older than `batch_days` go with their lines and output files, and uploads past their
`expires_at` (OpenAI's `expires_after`); nothing in flight (store.batches.prune).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cfai_cli.core.blobs import BlobsConfig
from cfai_cli.settings import Settings
from cfai_cli.store import batches as batches_store
from cfai_cli.store import budgets as budgets_store
from cfai_cli.store import limits as limits_store
from cfai_cli.store.blobs import delete_blocking, open_blobs
from cfai_cli.store.sql import Database, open_database

DAY = 86400.0
BATCH = 5_000  # rows per delete statement and transaction
PASS_BUDGET = 100_000  # rows one background pass deletes at most; the rest waits for the next pass
USAGE_MAX_ROWS = 1_000_000  # ~150 MB of usage log
RESPONSES_MAX_ROWS = 100_000  # stored responses hold whole conversations: fewer of them


@dataclass(frozen=True, slots=True)
class Retention:
    usage_days: float = 90  # 0: no time limit (the row cap still holds)
    responses_days: float = 30
    usage_max_rows: int = USAGE_MAX_ROWS
    responses_max_rows: int = RESPONSES_MAX_ROWS
    batch_days: float = 30  # finished batches; 0: kept (expired uploads go whatever it says)
    files_dir: Path | None = None  # where /v1/files keeps the bytes; None: batches and files are not pruned
    blobs: BlobsConfig | None = None  # [blobs]: the files' bytes are in its bucket rather than in files_dir


def retention_of(settings: Settings) -> Retention:
    return Retention(usage_days=settings.usage_retention_days, responses_days=settings.responses_retention_days,
                     batch_days=settings.batch_retention_days, files_dir=settings.files_dir,
                     blobs=settings.blobs)


@dataclass(frozen=True, slots=True)
class Pruned:
    usage_rows: int = 0
    responses: int = 0
    budget_days: int = 0  # key_spend rows (a key's neurons on one day) from before this month
    budget_holds: int = 0  # holds of requests whose worker never settled them, expired
    batches: int = 0  # finished batches past batch_days, with their lines and output files
    files: int = 0  # files deleted: those batches' output files and uploads past their expires_at
    rate_rows: int = 0  # requests and token counts older than every rate window (of keys not used since)


@dataclass(frozen=True, slots=True)
class _Table:
    name: str
    time_column: str


# In the store's database (store.sql: SQLite or PostgreSQL, whose tables have a rowid column for this).
_USAGE = _Table("usage_log", "ts")
_RESPONSES = _Table("responses", "created_at")


def _delete(db: Database, table: _Table, where: str, args: tuple[float, ...], order: str, want: int | None) -> int:
    """Delete up to `want` rows (None: all) matching `where`, oldest first, a batch per transaction."""
    done = 0
    while want is None or done < want:
        size = BATCH if want is None else min(BATCH, want - done)
        with db.transaction(write=True, lock=None) as conn:
            cur = conn.execute(f"DELETE FROM {table.name} WHERE rowid IN (SELECT rowid FROM {table.name} "
                               f"WHERE {where} {order} LIMIT ?)", (*args, size))
        done += cur.rowcount
        if cur.rowcount < size:
            break
    return done


def _prune_table(db: Database, table: _Table, *, before: float | None, max_rows: int, budget: int | None) -> int:
    deleted = 0
    if before is not None:
        deleted = _delete(db, table, f"{table.time_column} < ?", (before,), "", budget)
    left = None if budget is None else budget - deleted
    if left is not None and left <= 0:
        return deleted
    with db.transaction() as conn:
        count = int(conn.execute(f"SELECT COUNT(*) FROM {table.name}").fetchone()[0])
    over = count - max_rows
    if over > 0:
        want = over if left is None else min(over, left)
        deleted += _delete(db, table, "1 = 1", (), f"ORDER BY {table.time_column}", want)
    return deleted


def _prune_shared(db: Database, now: float) -> int:
    """PostgreSQL's durable spend: key days before this month, and account days before yesterday (the meter
    reads today's only)."""
    from cfai_cli.core.budgets import day_of

    with db.transaction(write=True, lock=None) as conn:
        conn.execute("DELETE FROM account_spend WHERE day < ?", (day_of(now - 2 * DAY),))
    return budgets_store.SpendStore(db).prune(now=now)


def prune(path: Path, retention: Retention, *, now: float, budget: int | None = PASS_BUDGET,
          usage_before: float | None = None, store: Path | str | Database | None = None) -> Pruned:
    """Delete what `retention` says is due (`usage_before` overrides the usage log's time limit). `path` is the
    SQLite file (the host's rate limits and budget holds); `store` the usage log's, responses', batches' and
    files' database ([store] url; None: the same file)."""
    db = open_database(path if store is None else store)
    if not path.exists() and not db.exists():
        return Pruned()
    if usage_before is None and retention.usage_days > 0:
        usage_before = now - retention.usage_days * DAY
    responses_before = now - retention.responses_days * DAY if retention.responses_days > 0 else None
    usage = _prune_table(db, _USAGE, before=usage_before, max_rows=retention.usage_max_rows, budget=budget)
    stored = _prune_table(db, _RESPONSES, before=responses_before, max_rows=retention.responses_max_rows,
                          budget=budget)
    shared_days = _prune_shared(db, now) if db.engine == "postgres" else 0
    batches = files = 0
    if retention.files_dir is not None:  # batches and files live in the store's database too
        blobs = open_blobs(retention.blobs or BlobsConfig(), retention.files_dir, "files")
        batches, files = batches_store.prune(
            db, lambda keys: delete_blocking(blobs, keys),
            before=now - retention.batch_days * DAY if retention.batch_days > 0 else None, now=now)
    if not path.exists():  # a shared store, and nothing of this host's yet
        return Pruned(usage_rows=usage, responses=stored, budget_days=shared_days, batches=batches, files=files)
    ledger = budgets_store.prune(path, now=now)  # one key and day a row, one row a request in flight: few
    rates = limits_store.prune(path, now=now)  # a day of an idle key's requests at most: its admissions trim the rest
    return Pruned(usage_rows=usage, responses=stored, budget_days=ledger.days + shared_days, budget_holds=ledger.holds,
                  batches=batches, files=files, rate_rows=rates)
