"""Per-key rate limits (requests per minute and day, tokens per minute), exact across processes.

Imports stdlib and store. The server sees the small `RateLimits` interface (a Redis implementation slots in
for a shared gateway); `RateLimiter` keeps the windows in the SQLite database every worker opens. Each admission
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

import math
import sqlite3
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple, Protocol

from cfai_cli.store import windows
from cfai_cli.store.db import connect
from cfai_cli.store.hot import HotPath
from cfai_cli.store.keys import KeyPolicy

MINUTE, DAY = 60.0, 86400.0
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


@dataclass(slots=True)
class Decision:
    """Admitted or not, how long to wait and why, and the x-ratelimit-* headers as an answer carries them (`raw`:
    names and values as bytes, made so by `decide` for server.auth to append as they are: encoding a dict of them
    per request cost ~11 k instructions, docs/performance.md round 9; `headers` as text, for refusals and tests)."""

    allowed: bool
    retry_after: float = 0.0
    reason: str = ""
    raw: list[tuple[bytes, bytes]] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {name.decode("latin-1"): value.decode("latin-1") for name, value in self.raw}


class Window(NamedTuple):
    """What one sliding window of a key holds now: its units, and when its oldest entry came (None: empty), as
    `decide` takes them (store.redis_limits; the SQLite admissions give `decide_counts` the numbers themselves)."""

    used: int
    oldest: float | None


UNMEASURED = Window(0, None)  # a window the key's policy does not limit


_LIMIT_REQUESTS, _REMAINING_REQUESTS, _RESET_REQUESTS = (
    b"x-ratelimit-limit-requests", b"x-ratelimit-remaining-requests", b"x-ratelimit-reset-requests")
_LIMIT_TOKENS, _REMAINING_TOKENS, _RESET_TOKENS = (
    b"x-ratelimit-limit-tokens", b"x-ratelimit-remaining-tokens", b"x-ratelimit-reset-tokens")


def decide(policy: KeyPolicy, units: int, now: float, minute: Window, day: Window, tokens: Window) -> Decision:
    """The decision on `units` more requests of a key whose windows hold what they do at `now`: which limit
    refuses, how long to wait, and OpenAI's x-ratelimit-* headers. One code for every RateLimits; the admission
    rule is repeated in store.redis_limits' Lua script, which must decide inside Redis to be atomic."""
    return decide_counts(policy, units, now, minute.used, minute.oldest, day.used, day.oldest, tokens.used,
                         tokens.oldest)


def decide_counts(policy: KeyPolicy, units: int, now: float, minute_used: int, minute_oldest: float | None,
                  day_used: int, day_oldest: float | None, tokens_used: int, tokens_oldest: float | None) -> Decision:
    """`decide` on each window's units and oldest entry as they are: store.limits' admissions make no `Window`
    (a named tuple's `__new__` is Python, ~2.8 k instructions each under callgrind: docs/performance.md round 11).
    Written out per window rather than looped over a table, the headers made as bytes at once: it runs on every
    admission of a limited key (~17 k instructions with a dict of text headers, ~28 k with their encoding; round 9)."""
    refusal: Decision | None = None
    rpm, rpd, tpm = policy.rpm, policy.rpd, policy.tpm
    limit: int | None = None
    left = 0
    wait = 0.0
    if rpm is not None:  # the headers describe the per-minute window when there is one
        used = minute_used + units
        wait = MINUTE if minute_oldest is None else minute_oldest + MINUTE - now
        limit, left = rpm, rpm - used
        if used > rpm:
            refusal = Decision(False, max(wait, 0.001), f"this key's limit of {rpm} requests per minute")
    if rpd is not None:
        used = day_used + units
        reset = DAY if day_oldest is None else day_oldest + DAY - now
        if rpm is None:
            limit, left, wait = rpd, rpd - used, reset
        if used > rpd and refusal is None:
            refusal = Decision(False, max(reset, 0.001), f"this key's limit of {rpd} requests per day")
    # A limit's digits made once (b"%d" ~1 k instructions, the dict's get ~0.4 k), a reset of a minute or less from
    # the table at once (`_reset_raw` inlined): measured under callgrind, docs/performance.md round 11.
    raw = [] if limit is None else [
        (_LIMIT_REQUESTS, _LIMITS.get(limit) or _digits(limit)),
        (_REMAINING_REQUESTS, b"%d" % left if left > 0 and refusal is None else b"0"),
        (_RESET_REQUESTS, _RESETS[total] if 0 <= (total := math.ceil(wait)) <= 60 else _reset_raw(wait))]
    if tpm is not None:
        used = tokens_used
        reset = 0.0 if tokens_oldest is None else tokens_oldest + MINUTE - now
        raw += ((_LIMIT_TOKENS, _LIMITS.get(tpm) or _digits(tpm)),
                (_REMAINING_TOKENS, b"%d" % (tpm - used) if used < tpm else b"0"),
                (_RESET_TOKENS, _RESETS[total] if 0 <= (total := math.ceil(reset)) <= 60 else _reset_raw(reset)))
        if used >= tpm and refusal is None:
            refusal = Decision(False, max(reset, 0.001), f"this key's limit of {tpm} tokens per minute")
    if refusal is not None:
        refusal.raw = raw
        return refusal
    return Decision(True, 0.0, "", raw)


_LIMITS: dict[int, bytes] = {}  # a limit's digits, made once: a key's limits are the same every admission


def _digits(limit: int) -> bytes:
    if len(_LIMITS) >= 4096:  # as many limits as keys, at most: forgotten all at once beyond
        _LIMITS.clear()
    digits = _LIMITS[limit] = b"%d" % limit
    return digits


def _reset_raw(seconds: float) -> bytes:
    """`_reset(seconds)` as bytes: a table to a minute (as a window's reset usually is)."""
    total = math.ceil(seconds)
    return _RESETS[max(total, 0)] if total <= 60 else _reset(seconds).encode("ascii")


def _reset(seconds: float) -> str:
    """OpenAI's x-ratelimit-reset-* format: '1s', '6m0s', '1h2m3s'."""
    total = max(0, math.ceil(seconds))
    if total < 60:  # a minute's window: the usual case
        return f"{total}s"
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes or hours else "") + f"{secs}s"


# b"0s" ... b"59s", b"1m0s": a window's reset of a minute or less, the usual case. To 60 included: a window whose
# oldest row came under a second ago (a key's first second of its minute) resets in 60 s.
_RESETS = tuple(_reset(n).encode("ascii") for n in range(61))


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


class RateLimits(Protocol):
    """What the server asks of a rate limiter."""

    async def admit(self, key_id: str, policy: KeyPolicy, *, now: float, units: int = 1) -> Decision:
        """Admit `units` requests now (recording them) or refuse them with how long to wait."""

    async def record_tokens(self, key_id: str, tokens: int, *, now: float) -> None:
        """Count the tokens a request of the key spent, for its tokens-per-minute window."""

    def record_tokens_now(self, key_id: str, tokens: int, *, now: float) -> bool:
        """`record_tokens` without an await if it needs none (True: counted, or in this process's next write
        transaction, which every later admission here joins or follows, at most store.hot's HOLD later), else
        False (then await `record_tokens`)."""


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
