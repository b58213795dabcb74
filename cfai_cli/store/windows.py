"""What one connection last read and wrote of each key's rate-limit windows, kept across its transactions while no
other connection commits: store.limits' admissions at c=1 without a read of the windows a request.

Imports stdlib only. store.hot's connections are `HotConnection`s (sqlite3.connect's documented `factory`). Inside a
write transaction, `known(conn)` reads `PRAGMA data_version` once (it moves whenever another connection, of this process
or another, has committed since its last read, never for this connection's own commits; inside BEGIN IMMEDIATE nobody
else can commit until this transaction ends) and forgets every key's windows when it moved; store.hot_tx calls
`committed` after each COMMIT (written out in place in `run_one` and `run_carried`, the usual paths) and `abandoned`
after every rollback or failure, which forgets them too (what a rolled-back transaction wrote into them never happened).
Every write to rate_log made on these connections goes through store.limits' `_admit_all` and `_record_all_tokens`,
which keep an entry in step with their own rows; trims and prune delete only rows that no window an entry describes
still holds (store.limits says why).

An entry is the state `_admit_all` keeps between two admissions of a group (round 9), so a transaction that finds
one decides as the next admission of that group would, under the same rules for reading again (a window's oldest
row left it, the clock moved back before the read, a minute since the read). Measured under callgrind
(docs/performance.md, "Keys with limits round 10"): a c=1 admission with its token record ~208 k -> ~175 k
instructions (the windows' SELECT and the token row's two subqueries gone, `PRAGMA data_version` ~9 k added).
"""

from __future__ import annotations

import sqlite3
from typing import Any

# (shape: (rpm, rpd, tpm) read, base, newest, total, first, first_before, oldest_minute, before_minute, has_minute,
#  oldest_day, before_day, has_day, tokens_total, tokens_before, tokens_oldest, tokens_newest); see store.limits.
Entry = tuple[Any, ...]
MAX_KEYS = 4096  # entries a connection keeps (forgotten all at once beyond: a key read again costs one SELECT)


class HotConnection(sqlite3.Connection):
    """A store.hot connection and what it knows of the keys' windows (`windows`, valid at data_version `version`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.windows: dict[str, Entry] = {}
        self.version: int | None = None
        self.checked = False  # `version` read in the current transaction
        # A cursor kept for the hot path's statements whose rows, if any, are read at once (BEGIN, COMMIT,
        # ROLLBACK, the version, rate_log's INSERTs; store.hot_tx and store.limits): the connection's `execute` makes
        # a cursor a statement, ~1.3 k instructions more each (callgrind; docs/performance.md round 11).
        self.statements = self.cursor()


def known(conn: sqlite3.Connection) -> HotConnection | None:
    """`conn`, whose `windows` are what it knows as its write transaction sees them (None: not a HotConnection, or
    outside a transaction)."""
    if type(conn) is not HotConnection or not conn.in_transaction:
        return None
    if not conn.checked:
        version = conn.statements.execute("PRAGMA data_version").fetchone()[0]
        if version != conn.version or len(conn.windows) > MAX_KEYS:
            conn.windows.clear()
            conn.version = version
        conn.checked = True
    return conn


def committed(conn: sqlite3.Connection) -> None:
    """After a COMMIT: the next transaction reads data_version again (others may commit from now on)."""
    if type(conn) is HotConnection:
        conn.checked = False


def abandoned(conn: sqlite3.Connection) -> None:
    """After a ROLLBACK or a failure: what this transaction wrote into the windows never happened."""
    if type(conn) is HotConnection:
        conn.checked = False
        conn.version = None
        conn.windows.clear()


def record_tokens(conn: HotConnection, entry: Entry, key_id: str, items: list[tuple[int, float]], insert: str,
                  kind: int) -> None:
    """A key's token records when its entry read the tokens' window: the rows store.limits' SQL would write (each no
    earlier than the key's newest token row, running totals), from the entry, by one plain INSERT; the entry kept
    in step (the window's oldest row is the first of these when it was empty: none is older than a row it holds)."""
    total, before, oldest, newest = entry[12:]
    rows = []
    for tokens, now in items:
        newest = now if newest is None else max(now, newest)
        if oldest is None:
            oldest, before = newest, total
        total += tokens
        rows.append((key_id, kind, newest, total, tokens))
    conn.statements.executemany(insert, rows)  # one row: as `execute` costs (23.2 k either way, round 10)
    conn.windows[key_id] = (*entry[:12], total, before, oldest, newest)
