"""Batches (`/v1/batches`) and their lines, durable in the store's database (store.sql: the SQLite file, or
PostgreSQL), with a lease per running batch.

Imports stdlib and store.sql. A batch row holds OpenAI's Batch fields, its owner (the key's id) and a lease:
the executor that runs it writes its id and a heartbeat deadline, and every write it makes afterwards checks
it still holds the lease in the same transaction, so two processes (uvicorn workers, two hosts on one
database) never run one batch at once. The lease is taken by a conditional UPDATE (`lease_until < now`) whose
row count says who won, and the holder's check is an UPDATE of the batch row too: on PostgreSQL that row lock
lasts to the commit, so a claim racing a holder's write waits for it and then sees the lease still held (row
level, no table lock); on SQLite every write transaction is BEGIN IMMEDIATE anyway. Each input line is a row;
its result is written the moment it is known (`finish_line`, only once: a line already done is never written or
run again), which is what lets a restarted executor carry on where the last one stopped. Lists page by insertion
order (rowid), as files do (store.files says what that means on PostgreSQL). Upstream queue jobs
(Workers AI's async batches) are rows too, polled again after a restart.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfai_cli.errors import BlobsUnavailable
from cfai_cli.store.files import OWNED, owned_by
from cfai_cli.store.sql import Database, Tx, open_database

ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")  # an executor has work to do
_FIELDS = ("id", "owner", "endpoint", "input_file_id", "completion_window", "metadata", "status", "created_at",
           "in_progress_at", "expires_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
           "cancelling_at", "cancelled_at", "errors", "output_file_id", "error_file_id", "total", "completed",
           "failed", "prompt_tokens", "completion_tokens")
_SELECT = f"SELECT {', '.join(_FIELDS)} FROM batches"
_SETTABLE = frozenset(_FIELDS) - {"id", "owner", "created_at"}

Row = dict[str, Any]


def _row(values: Sequence[Any]) -> Row:
    row = dict(zip(_FIELDS, values, strict=True))
    row["metadata"] = json.loads(row["metadata"]) if row["metadata"] else None
    row["errors"] = json.loads(row["errors"]) if row["errors"] else None
    row["usage"] = (row["prompt_tokens"], row["completion_tokens"]) if row["status"] == "completed" else None
    return row


@dataclass(frozen=True, slots=True)
class Line:
    line: int
    custom_id: str
    body: str  # the request body, JSON


class LeaseLost(Exception):
    """Another executor holds the batch now: this one must stop working on it."""


class BatchStore:
    def __init__(self, target: Path | str | Database) -> None:
        self.db = open_database(target)

    def _db(self, *, write: bool = True) -> AbstractContextManager[Tx]:
        # No advisory lock: every read-check-write here is exact by row locks (see the module doc).
        return self.db.transaction(write=write, lock=None)

    def create(self, *, batch_id: str, owner: str | None, endpoint: str, input_file_id: str,
               completion_window: str, metadata: Mapping[str, str] | None, created_at: int, expires_at: int) -> Row:
        with self._db() as conn:
            conn.execute("INSERT INTO batches (id, owner, endpoint, input_file_id, completion_window, metadata, "
                         "status, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, 'validating', ?, ?)",
                         (batch_id, owner, endpoint, input_file_id, completion_window,
                          json.dumps(dict(metadata)) if metadata else None, created_at, expires_at))
            return _row(conn.execute(f"{_SELECT} WHERE id = ?", (batch_id,)).fetchone())

    def get(self, batch_id: str, *, owner: str | None) -> Row | None:
        with self._db(write=False) as conn:
            found = conn.execute(f"{_SELECT} WHERE id = ? AND {OWNED}", (batch_id, owner)).fetchone()
        return None if found is None else _row(found)

    def load(self, batch_id: str) -> Row:
        """The batch whoever owns it (the executor's view)."""
        with self._db(write=False) as conn:
            return _row(conn.execute(f"{_SELECT} WHERE id = ?", (batch_id,)).fetchone())

    def page(self, *, owner: str | None, limit: int, after: str | None) -> tuple[list[Row], bool]:
        """The owner's batches newest first, after the batch `after`, and whether more follow."""
        where, args = owned_by(owner)
        with self._db(write=False) as conn:
            if after is not None:
                found = conn.execute(f"SELECT rowid FROM batches WHERE id = ? AND {OWNED}", (after, owner)).fetchone()
                if found is not None:
                    where += " AND rowid < ?"
                    args.append(found[0])
            rows = conn.execute(f"{_SELECT} WHERE {where} ORDER BY rowid DESC LIMIT ?", (*args, limit + 1)).fetchall()
        return [_row(r) for r in rows[:limit]], len(rows) > limit

    def request_cancel(self, batch_id: str, *, owner: str | None, now: int) -> Row | None:
        """Mark a validating or running batch `cancelling` (its executor stops starting lines); other states stay."""
        with self._db() as conn:
            conn.execute(f"UPDATE batches SET status = 'cancelling', cancelling_at = ? WHERE id = ? AND {OWNED} "
                         "AND status IN ('validating', 'in_progress')", (now, batch_id, owner))
            found = conn.execute(f"{_SELECT} WHERE id = ? AND {OWNED}", (batch_id, owner)).fetchone()
        return None if found is None else _row(found)

    # -- leases ---------------------------------------------------------------------------------------------

    def claim(self, holder: str, *, now: float, ttl: float, limit: int, owned_only: bool = False) -> list[str]:
        """Take the lease of up to `limit` active batches nobody holds (or whose holder stopped renewing it);
        `owned_only`: only batches a key owns (a server that requires keys leaves the CLI's keyless batches to it)."""
        free = (f"SELECT id FROM batches WHERE status IN ({', '.join('?' * len(ACTIVE))}) AND "
                f"(lease_until IS NULL OR lease_until < ?){' AND owner IS NOT NULL' if owned_only else ''} "
                "ORDER BY rowid LIMIT ?")
        with self._db(write=False) as conn:  # a read first: idle executors poll without taking the write lock
            if conn.execute(free, (*ACTIVE, now, 1)).fetchone() is None:
                return []
        with self._db() as conn:
            # Each lease is taken only if still free when its UPDATE runs: on PostgreSQL another claimer may have
            # taken it since the SELECT (its row lock makes this UPDATE wait, then find lease_until renewed).
            # Rows are updated in rowid order by every claimer, so two claims never wait on each other in a cycle.
            ids = [r[0] for r in conn.execute(free, (*ACTIVE, now, limit)).fetchall()]
            return [batch_id for batch_id in ids if conn.execute(
                "UPDATE batches SET lease_owner = ?, lease_until = ? WHERE id = ? AND "
                "(lease_until IS NULL OR lease_until < ?)", (holder, now + ttl, batch_id, now)).rowcount > 0]

    def renew(self, batch_id: str, holder: str, *, now: float, ttl: float) -> bool:
        with self._db() as conn:
            return conn.execute("UPDATE batches SET lease_until = ? WHERE id = ? AND lease_owner = ?",
                                (now + ttl, batch_id, holder)).rowcount > 0

    def release(self, batch_id: str, holder: str) -> None:
        with self._db() as conn:
            conn.execute("UPDATE batches SET lease_owner = NULL, lease_until = NULL WHERE id = ? AND lease_owner = ?",
                         (batch_id, holder))

    def claim_one(self, batch_id: str, holder: str, *, now: float, ttl: float) -> bool:
        """Take the lease of one active batch if nobody holds it (the CLI running the batch it waits for)."""
        with self._db() as conn:
            return conn.execute(
                f"UPDATE batches SET lease_owner = ?, lease_until = ? WHERE id = ? AND status IN "
                f"({', '.join('?' * len(ACTIVE))}) AND (lease_until IS NULL OR lease_until < ?)",
                (holder, now + ttl, batch_id, *ACTIVE, now)).rowcount > 0

    # -- the local admin's view (the CLI sees every batch of the data directory, whoever owns it) ------------

    def find(self, batch_id: str) -> Row | None:
        with self._db(write=False) as conn:
            found = conn.execute(f"{_SELECT} WHERE id = ?", (batch_id,)).fetchone()
        return None if found is None else _row(found)

    def page_all(self, *, limit: int, after: str | None) -> tuple[list[Row], bool]:
        """Every batch newest first, after the batch `after`, and whether more follow."""
        where, args = "1 = 1", []
        with self._db(write=False) as conn:
            if after is not None:
                found = conn.execute("SELECT rowid FROM batches WHERE id = ?", (after,)).fetchone()
                if found is not None:
                    where, args = "rowid < ?", [found[0]]
            rows = conn.execute(f"{_SELECT} WHERE {where} ORDER BY rowid DESC LIMIT ?", (*args, limit + 1)).fetchall()
        return [_row(r) for r in rows[:limit]], len(rows) > limit

    @staticmethod
    def _hold(conn: Tx, batch_id: str, holder: str) -> None:
        # An UPDATE rather than a SELECT: on PostgreSQL it locks the batch row until this transaction ends, so no
        # claim can take the lease between this check and the writes after it (SELECT ... FOR UPDATE, in SQL
        # SQLite runs too).
        if conn.execute("UPDATE batches SET lease_owner = lease_owner WHERE id = ? AND lease_owner = ?",
                        (batch_id, holder)).rowcount == 0:
            raise LeaseLost(batch_id)

    # -- the holder's writes (each checks the lease) -----------------------------------------------------------

    def update(self, batch_id: str, holder: str, **values: Any) -> None:
        unknown = set(values) - _SETTABLE
        if unknown:
            raise ValueError(f"not a batch field: {sorted(unknown)}")
        if "errors" in values:
            values["errors"] = json.dumps(values["errors"])
        with self._db() as conn:
            self._hold(conn, batch_id, holder)
            conn.execute(f"UPDATE batches SET {', '.join(f'{k} = ?' for k in values)} WHERE id = ?",
                         (*values.values(), batch_id))

    def start(self, batch_id: str, holder: str, lines: Sequence[Line], *, now: int) -> None:
        """Record the checked input lines and move the batch to in_progress (unless it is being cancelled)."""
        with self._db() as conn:
            self._hold(conn, batch_id, holder)
            conn.executemany("INSERT INTO batch_lines (batch_id, line, custom_id, body) VALUES (?, ?, ?, ?) "
                             "ON CONFLICT (batch_id, line) DO NOTHING",
                             [(batch_id, ln.line, ln.custom_id, ln.body) for ln in lines])
            conn.execute("UPDATE batches SET total = ?, in_progress_at = ?, "
                         "status = CASE status WHEN 'validating' THEN 'in_progress' ELSE status END WHERE id = ?",
                         (len(lines), now, batch_id))

    def pending(self, batch_id: str) -> list[Line]:
        """Lines with no result yet and not waiting in an upstream queue job, in file order."""
        with self._db(write=False) as conn:
            rows = conn.execute("SELECT line, custom_id, body FROM batch_lines WHERE batch_id = ? AND state = "
                                "'pending' ORDER BY line", (batch_id,)).fetchall()
        return [Line(*r) for r in rows]

    def finish_line(self, batch_id: str, holder: str, line: int, *, ok: bool, output: Mapping[str, Any],
                    tokens: tuple[int, int] = (0, 0)) -> bool:
        """Write a line's result once; False if it already had one. LeaseLost if the batch is not ours."""
        with self._db() as conn:
            self._hold(conn, batch_id, holder)
            done = conn.execute("UPDATE batch_lines SET state = 'done', ok = ?, output = ? WHERE batch_id = ? AND "
                                "line = ? AND state != 'done'",
                                (int(ok), json.dumps(output, ensure_ascii=False), batch_id, line)).rowcount > 0
            if done:
                column = "completed" if ok else "failed"
                conn.execute(f"UPDATE batches SET {column} = {column} + 1, prompt_tokens = prompt_tokens + ?, "
                             "completion_tokens = completion_tokens + ? WHERE id = ?", (*tokens, batch_id))
        return done

    def results(self, batch_id: str) -> Iterator[tuple[bool, str]]:
        """(ok, output line JSON) of each finished line in file order, read in pages (a batch may be large)."""
        last = 0
        while True:
            with self._db(write=False) as conn:
                rows = conn.execute("SELECT line, ok, output FROM batch_lines WHERE batch_id = ? AND state = 'done' "
                                    "AND line > ? ORDER BY line LIMIT 1000", (batch_id, last)).fetchall()
            if not rows:
                return
            for _line, ok, output in rows:
                yield bool(ok), output
            last = rows[-1][0]

    def unfinished(self, batch_id: str) -> list[tuple[int, str]]:
        """(line, custom_id) of lines without a result (an expired batch reports them as errors)."""
        with self._db(write=False) as conn:
            return [(r[0], r[1]) for r in conn.execute(
                "SELECT line, custom_id FROM batch_lines WHERE batch_id = ? AND state != 'done' ORDER BY line",
                (batch_id,))]

    # -- upstream queue jobs --------------------------------------------------------------------------------

    def add_job(self, batch_id: str, holder: str, job_id: str, job: str, lines: Sequence[int]) -> None:
        with self._db() as conn:
            self._hold(conn, batch_id, holder)
            conn.execute("INSERT INTO batch_jobs (batch_id, job_id, job, lines) VALUES (?, ?, ?, ?)",
                         (batch_id, job_id, job, json.dumps(list(lines))))
            conn.executemany("UPDATE batch_lines SET state = 'queued' WHERE batch_id = ? AND line = ? AND "
                             "state = 'pending'", [(batch_id, n) for n in lines])

    def jobs(self, batch_id: str) -> list[tuple[str, str, list[int]]]:
        with self._db(write=False) as conn:
            return [(r[0], r[1], json.loads(r[2])) for r in conn.execute(
                "SELECT job_id, job, lines FROM batch_jobs WHERE batch_id = ? ORDER BY rowid", (batch_id,))]

    def drop_job(self, batch_id: str, holder: str, job_id: str) -> None:
        """Forget a finished job; lines it left without a result go back to pending."""
        with self._db() as conn:
            self._hold(conn, batch_id, holder)
            found = conn.execute("SELECT lines FROM batch_jobs WHERE batch_id = ? AND job_id = ?",
                                 (batch_id, job_id)).fetchone()
            conn.execute("DELETE FROM batch_jobs WHERE batch_id = ? AND job_id = ?", (batch_id, job_id))
            if found is not None:
                conn.executemany("UPDATE batch_lines SET state = 'pending' WHERE batch_id = ? AND line = ? AND "
                                 "state = 'queued'", [(batch_id, n) for n in json.loads(found[0])])


# -- retention --------------------------------------------------------------------------------------------------

FINAL = ("completed", "failed", "cancelled", "expired")


def prune(target: Path | str | Database, remove: Callable[[list[str]], None], *, before: float | None,
          now: float) -> tuple[int, int]:
    """(batches, files) deleted: finished batches created before `before` (None: none) with their lines, jobs and
    output/error files, and uploads past their `expires_at`. Nothing in flight goes: a batch still active is
    kept whatever its age, and so is the input file it reads (store.retention). `remove` deletes the files'
    objects (store.blobs), before their rows: when the store is down the rows stay, due, for the next pass."""
    db = open_database(target)
    with db.transaction(write=True, lock="batches:prune") as conn:  # one replica's pass at a time
        old = conn.execute(f"SELECT id, output_file_id, error_file_id FROM batches WHERE status IN "
                           f"({', '.join('?' * len(FINAL))}) AND created_at < ?",
                           (*FINAL, -1 if before is None else before)).fetchall()
        for batch_id, *_ in old:
            for table, column in (("batch_lines", "batch_id"), ("batch_jobs", "batch_id"), ("batches", "id")):
                conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (batch_id,))
        # the output files of the batches gone are due now: they go below with the expired uploads
        conn.executemany("UPDATE files SET expires_at = ? WHERE id = ?",
                         [(int(now), f) for _, *outputs in old for f in outputs if f])
        gone = [r[0] for r in conn.execute(
            f"SELECT id FROM files WHERE expires_at IS NOT NULL AND expires_at <= ? AND id NOT IN (SELECT "
            f"input_file_id FROM batches WHERE status IN ({', '.join('?' * len(ACTIVE))}))", (now, *ACTIVE))]
    if gone:
        try:
            remove(gone)
        except BlobsUnavailable as exc:
            logging.getLogger("cfai.retention").warning("files past their expiry kept for now: %s", exc.message)
            return len(old), 0
        with db.transaction(write=True, lock=None) as conn:
            conn.executemany("DELETE FROM files WHERE id = ?", [(f,) for f in gone])
    return len(old), len(gone)
