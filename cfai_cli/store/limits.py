"""Per-key rate limits (requests per minute and day, tokens per minute), exact across processes.

Imports stdlib and store. The server sees the small `RateLimits` interface (a Redis implementation slots in
for a shared gateway; the decision and its headers, one code for both, are store.limit_rule's); `RateLimiter`
keeps the windows in the SQLite database every worker opens. Each admission
is a write transaction (BEGIN IMMEDIATE, group-committed with its tick's others: store.hot), so the check and the
insert cannot interleave, whether the other requests come from this worker or another; a tick's admissions of one
key are decided in order on one read of its windows (`_admit_all`), its held token records written on one; and that
read stands for the connection's next transactions while no other connection commits (store.windows: a c=1 key's
admissions read their windows once, not once each).
Windows slide: a request counts for exactly 60 s (or 24 h) after it was admitted, and tokens for 60 s after
they were recorded. Each row of `rate_log` carries the key's running total of its kind, so what a window holds
is the newest total minus the total before its oldest row: two index lookups, however many rows the window
holds (a COUNT over a busy key's minute cost 15 ms at 3,000 req/s). A key's rows older than its longest window
are trimmed as it is admitted (a minute of them, or a day with `rpd`), an idle key's by the retention pass.
"""

from __future__ import annotations

import sqlite3
from functools import lru_cache
from pathlib import Path

from cfai_cli.store import windows
from cfai_cli.store.db import connect
from cfai_cli.store.hot import HotPath
from cfai_cli.store.keys import KeyPolicy
from cfai_cli.store.limit_rule import DAY, MINUTE, Decision, decide_counts

REQUESTS, TOKENS = 0, 1  # rate_log.kind
TRIM_EVERY = 64  # admissions (in this process) between two trims of the admitted key's old rows
SCHEMA = """
CREATE TABLE IF NOT EXISTS rate_log (
    key_id TEXT NOT NULL,
    kind INTEGER NOT NULL,
    ts REAL NOT NULL,
    total INTEGER NOT NULL,
    units INTEGER NOT NULL,
    PRIMARY KEY (key_id, kind, ts, total)
) WITHOUT ROWID;
"""


def migrate(conn: sqlite3.Connection) -> None:
    """The windows an older cfai kept (one row a request, one a token count) into rate_log, with running totals."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for kind, table, units in ((REQUESTS, "rate_requests", "1"), (TOKENS, "rate_tokens", "tokens")):
            if table in tables:
                conn.execute(f"INSERT OR IGNORE INTO rate_log (key_id, kind, ts, total, units) "
                             f"SELECT key_id, {kind}, ts, SUM({units}) OVER (PARTITION BY key_id ORDER BY ts, rowid), "
                             f"{units} FROM {table}")
                conn.execute(f"DROP TABLE {table}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


_INSERT = "INSERT INTO rate_log (key_id, kind, ts, total, units) VALUES (?, ?, ?, ?, ?)"


def _newest(column: str, kind: int) -> str:
    return (f"(SELECT {column} FROM rate_log WHERE key_id = ?1 AND kind = {kind} "
            "ORDER BY ts DESC, total DESC LIMIT 1)")


def _oldest(column: str, kind: int, since: str) -> str:
    return (f"(SELECT {column} FROM rate_log WHERE key_id = ?1 AND kind = {kind} AND ts > {since} "
            "ORDER BY ts, total LIMIT 1)")


@lru_cache(maxsize=8)
def _windows(rpm: bool, rpd: bool, tpm: bool) -> tuple[str, int]:
    """One SELECT of what an admission reads, for a policy with these limits, and how many parameters it takes
    (?1 the key, ?2 a minute ago, ?3 a day ago): the key's newest request row (time, total), then per limited
    window its oldest row's time and the total before it (and the newest token total). Each column an index
    lookup, as the four statements it replaces did (each a cursor, a GIL release and SQLite's mutexes: ~20 k
    instructions an admission, bench/keys_instructions.py)."""
    columns = [_newest("ts", REQUESTS), _newest("total", REQUESTS)]
    if rpm:
        columns += [_oldest("ts", REQUESTS, "?2"), _oldest("total - units", REQUESTS, "?2")]
    if rpd:
        columns += [_oldest("ts", REQUESTS, "?3"), _oldest("total - units", REQUESTS, "?3")]
    if tpm:
        columns += [_newest("total", TOKENS), _oldest("ts", TOKENS, "?2"), _oldest("total - units", TOKENS, "?2"),
                    _newest("ts", TOKENS)]  # for store.windows' token records
    return "SELECT " + ", ".join(columns), 3 if rpd else 2 if rpm or tpm else 1


# A request's tokens in one statement, atomic alone (store.hot's `single`): the key's next token row after its
# newest (never before it: a clock read before another worker's commit keeps the totals in time order). VALUES,
# not INSERT ... SELECT, which copies its row through a temporary table when it reads the table it writes
# (~13 k instructions more; bench/keys_instructions.py).
_RECORD_TOKENS = (f"INSERT INTO rate_log (key_id, kind, ts, total, units) VALUES (?1, {TOKENS}, "
                  f"max(?2, COALESCE({_newest('ts', TOKENS)}, ?2)), COALESCE({_newest('total', TOKENS)}, 0) + ?3, ?3)")


def _record_tokens(conn: sqlite3.Connection, key_id: str, tokens: int, now: float) -> None:
    _record_all_tokens(conn, key_id, [(tokens, now)])


_NEWEST_TOKENS = (f"SELECT ts, total FROM rate_log WHERE key_id = ? AND kind = {TOKENS} "
                  "ORDER BY ts DESC, total DESC LIMIT 1")


def _record_all_tokens(conn: sqlite3.Connection, key_id: str, items: list[tuple[int, float]]) -> None:
    """A key's token records held together (store.hot's defer_grouped): the rows `_record_tokens` would write one
    after another, its newest row read once (~25 k -> ~13 k instructions a record at c=32); one alone as it does.
    When this connection knows the key's token window (store.windows), the rows are made from it, no read at all."""
    hot = windows.known(conn)
    entry = None if hot is None else hot.windows.get(key_id)
    # (an entry of a policy without tpm never counts tokens: kept as it is, the rows written below)
    if hot is not None and entry is not None and entry[0][2]:
        windows.record_tokens(hot, entry, key_id, items, _INSERT, TOKENS)
        return
    if len(items) == 1:
        tokens, now = items[0]
        conn.execute(_RECORD_TOKENS, (key_id, now, tokens))
        return
    row = conn.execute(_NEWEST_TOKENS, (key_id,)).fetchone()
    newest, total = (None, 0) if row is None else row
    rows = []
    for tokens, now in items:
        newest = now if newest is None else max(now, newest)
        total += tokens
        rows.append((key_id, TOKENS, newest, total, tokens))
    conn.executemany(_INSERT, rows)


class RateLimiter:
    """`RateLimits` in the SQLite database at `path` (`hot`: the process's hot-path transactions on it)."""

    def __init__(self, path: Path, hot: HotPath | None = None) -> None:
        self.path = path
        self.hot = hot or HotPath(path)
        self._admitted = 0
        self._ensured: HotPath | None = None  # the HotPath `ensure`d (a call less an admission and a record)

    async def admit(self, key_id: str, policy: KeyPolicy, *, now: float, units: int = 1) -> Decision:
        """A request is admitted as one unit at the door; a request that fans out is charged its other upstream
        calls as more units when the service knows them (service.record)."""
        if self._ensured is not self.hot:
            self._ensure()
        self._admitted += 1
        # A tick's admissions of one key (concurrent requests) are one piece: its windows read once (_admit_all).
        decision: Decision = await self.hot.run_grouped(
            (key_id, id(policy)), (policy, now, units, self._admitted % TRIM_EVERY == 0), _admit_all)
        return decision

    def _ensure(self) -> None:
        self.hot.ensure(SCHEMA, migrate)
        self._ensured = self.hot

    async def record_tokens(self, key_id: str, tokens: int, *, now: float) -> None:
        if tokens > 0:
            self.hot.ensure(SCHEMA, migrate)
            await self.hot.run(lambda conn: _record_tokens(conn, key_id, tokens, now))

    def record_tokens_now(self, key_id: str, tokens: int, *, now: float) -> bool:
        if tokens <= 0:
            return True
        if self._ensured is not self.hot:
            self._ensure()
        # The caller, a request's end, has sent its answer and needs no result: the record rides on this process's
        # next write transaction (the next admission reads the windows after writing it), or commits alone
        # within store.hot's HOLD (10 ms). Another worker counts these tokens at most that much later: as if the
        # answer had ended 10 ms later, which a TPM limit admits anyway (a request's tokens are known only at its
        # end; its own admission cannot count them). The requests per minute and day are exact as before.
        self.hot.defer_grouped(key_id, (tokens, now), _record_all_tokens)
        return True



def _admit_all(conn: sqlite3.Connection, key: tuple[str, int], items: list[tuple[KeyPolicy, float, int, bool]]
               ) -> list[tuple[bool, Decision | Exception]]:
    """The admissions of one key (and one policy) that one tick of the loop submitted, in order, in one write
    transaction: (True, the decision) each, or (False, what its decision raised).

    The windows are read once (the SELECT was ~54 k of an admission's ~91 k instructions at c=32, measured alone
    under callgrind: docs/performance.md round 9) and each admission is decided on them plus the rows admitted
    before it, exactly as a read of its own would: while its time is no earlier than the read's and under a minute
    after it, and the oldest row of each window read is still inside that window at its time, the rows in its
    windows are the ones read and the ones admitted since. Otherwise (a window's oldest row just left it, a clock
    moved back, a group longer than a minute) the rows admitted so far are written and the windows read again.
    What the group ends with is kept on the connection (store.windows), and the next transaction's admissions of the
    key start from it under the same rules as long as no other connection has committed: at c=1 the read of the
    windows (an admission with its token record ~208 k -> ~175 k instructions, docs/performance.md round 10)."""
    key_id = key[0]
    policy = items[0][0]
    rpm, rpd, tpm = policy.rpm is not None, policy.rpd is not None, policy.tpm is not None
    shape = (rpm, rpd, tpm)
    outcomes: list[tuple[bool, Decision | Exception]] = []
    rows: list[tuple[str, int, float, int, int]] = []  # the admitted, written at the end (or before a read)
    # What this connection's last transactions read and wrote of the key's windows, while no other connection has
    # committed since (store.windows): the state between two admissions of a group, carried to the next one.
    hot = windows.known(conn)
    entry = None if hot is None else hot.windows.get(key_id)
    if entry is not None and entry[0] == shape:
        (_, base, newest, total, first, first_before, oldest_minute, before_minute, has_minute, oldest_day,
         before_day, has_day, tokens_total, tokens_before, tokens_oldest, tokens_newest) = entry
        tokens_used = 0 if tokens_oldest is None else tokens_total - tokens_before
    else:
        base = newest = first = tokens_oldest = tokens_newest = None  # base: when the windows were read
        total = first_before = tokens_total = tokens_before = before_minute = before_day = 0
        oldest_minute = oldest_day = 0.0
        has_minute = has_day = False
        tokens_used = 0
    for _, now, units, trim in items:
        if (base is None or not base <= now < base + MINUTE or (has_minute and oldest_minute <= now - MINUTE)
                or (has_day and oldest_day <= now - DAY)
                or (tokens_oldest is not None and tokens_oldest <= now - MINUTE)):
            if rows:
                conn.executemany(_INSERT, rows)
                rows.clear()
            sql, count = _windows(rpm, rpd, tpm)
            row = conn.execute(sql, (key_id, now - MINUTE, now - DAY)[:count]).fetchone()
            base, newest, total, first = now, row[0], row[1] or 0, None
            has_minute = has_day = False
            tokens_used = 0  # the windows the key's policy does not limit are not read
            column = 2
            if rpm:
                if row[2] is not None:
                    has_minute, oldest_minute, before_minute = True, row[2], row[3]
                column = 4
            if rpd:
                if row[column] is not None:
                    has_day, oldest_day, before_day = True, row[column], row[column + 1]
                column += 2
            if tpm:
                tokens_total, tokens_oldest, tokens_newest = row[column] or 0, row[column + 1], row[column + 3]
                if tokens_oldest is not None:
                    tokens_before = row[column + 2]
                    tokens_used = tokens_total - tokens_before
        # Each window's units and oldest row: the ones read, else (empty when read) the group's first admitted.
        minute_oldest = oldest_minute if has_minute else first
        day_oldest = oldest_day if has_day else first
        try:
            decision = decide_counts(
                policy, units, now,
                total - (before_minute if has_minute else first_before) if minute_oldest is not None else 0,
                minute_oldest,
                total - (before_day if has_day else first_before) if day_oldest is not None else 0,
                day_oldest,
                tokens_used, tokens_oldest)
        except Exception as exc:  # a bug: only its own request fails
            outcomes.append((False, exc))
            continue
        outcomes.append((True, decision))
        if not decision.allowed:
            continue
        # Never before the key's newest row (a clock read before another worker's commit): totals stay in time order.
        newest = now if newest is None else max(now, newest)
        if first is None:
            first, first_before = newest, total
        total += units
        rows.append((key_id, REQUESTS, newest, total, units))
        if trim:  # what no window of the key reads any more (a policy given rpd later counts from here)
            # No read again after it: a row it deletes from a window read made this admission read again (that
            # window's oldest row had left it), so the next ones, no earlier, have none of them in their windows.
            conn.executemany(_INSERT, rows)
            rows.clear()
            conn.execute("DELETE FROM rate_log WHERE key_id = ? AND kind = ? AND ts <= ?",
                         (key_id, REQUESTS, now - (DAY if rpd else MINUTE)))
            conn.execute("DELETE FROM rate_log WHERE key_id = ? AND kind = ? AND ts <= ?",
                         (key_id, TOKENS, now - MINUTE))
            if tokens_newest is not None and tokens_newest <= now - MINUTE:  # every token row went (none in the
                tokens_total, tokens_newest = 0, None  # window): the next starts the totals again, as SQL's does
    if rows:
        (conn if hot is None else hot.statements).executemany(_INSERT, rows)
    if hot is not None and base is not None:
        hot.windows[key_id] = (shape, base, newest, total, first, first_before, oldest_minute, before_minute,
                               has_minute, oldest_day, before_day, has_day, tokens_total, tokens_before,
                               tokens_oldest, tokens_newest)
    return outcomes


def prune(path: Path, *, now: float) -> int:
    """Delete the rows no window reads any more, of every key (the keys not admitted lately keep theirs till here)."""
    with connect(path, SCHEMA, immediate=True, migrate=migrate) as conn:
        return int(conn.execute("DELETE FROM rate_log WHERE ts <= ? OR (kind = ? AND ts <= ?)",
                                (now - DAY, TOKENS, now - MINUTE)).rowcount)
