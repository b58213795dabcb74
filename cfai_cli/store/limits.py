"""Per-key rate limits (requests per minute and day, tokens per minute), exact across processes.

Imports stdlib and store. The server sees the small `RateLimits` interface (a Redis implementation slots in
for a shared gateway); `RateLimiter` keeps the windows in the SQLite database every worker opens. Each admission
is a write transaction (BEGIN IMMEDIATE, group-committed with its tick's others: store.hot), so the check and the
insert cannot interleave, whether the other requests come from this worker or another.
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
from pathlib import Path
from typing import Protocol

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
    allowed: bool
    retry_after: float = 0.0
    reason: str = ""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Window:
    """What one sliding window of a key holds now: its units, and when its oldest entry came (None: empty)."""

    used: int
    oldest: float | None


UNMEASURED = Window(0, None)  # a window the key's policy does not limit


_LIMIT_REQUESTS, _REMAINING_REQUESTS, _RESET_REQUESTS = (
    "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests")
_LIMIT_TOKENS, _REMAINING_TOKENS, _RESET_TOKENS = (
    "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")


def decide(policy: KeyPolicy, units: int, now: float, minute: Window, day: Window, tokens: Window) -> Decision:
    """The decision on `units` more requests of a key whose windows hold what they do at `now`: which limit
    refuses, how long to wait, and OpenAI's x-ratelimit-* headers. One code for every RateLimits; the admission
    rule is repeated in store.redis_limits' Lua script, which must decide inside Redis to be atomic.
    Written out per window rather than looped over a table: it runs on every admission of a limited key."""
    headers: dict[str, str] = {}
    refusal: Decision | None = None
    rpm, rpd, tpm = policy.rpm, policy.rpd, policy.tpm
    if rpm is not None:  # the headers describe the per-minute window when there is one
        reset = (minute.oldest + MINUTE - now) if minute.oldest is not None else MINUTE
        headers[_LIMIT_REQUESTS] = str(rpm)
        headers[_REMAINING_REQUESTS] = str(max(0, rpm - minute.used - units))
        headers[_RESET_REQUESTS] = _reset(reset)
        if minute.used + units > rpm:
            refusal = Decision(False, max(reset, 0.001), f"this key's limit of {rpm} requests per minute")
    if rpd is not None:
        reset = (day.oldest + DAY - now) if day.oldest is not None else DAY
        if rpm is None:
            headers[_LIMIT_REQUESTS] = str(rpd)
            headers[_REMAINING_REQUESTS] = str(max(0, rpd - day.used - units))
            headers[_RESET_REQUESTS] = _reset(reset)
        if day.used + units > rpd and refusal is None:
            refusal = Decision(False, max(reset, 0.001), f"this key's limit of {rpd} requests per day")
    if refusal is not None:
        headers[_REMAINING_REQUESTS] = "0"
    if tpm is not None:
        reset = (tokens.oldest + MINUTE - now) if tokens.oldest is not None else 0.0
        headers[_LIMIT_TOKENS] = str(tpm)
        headers[_REMAINING_TOKENS] = str(max(0, tpm - tokens.used))
        headers[_RESET_TOKENS] = _reset(reset)
        if tokens.used >= tpm and refusal is None:
            refusal = Decision(False, max(reset, 0.001), f"this key's limit of {tpm} tokens per minute")
    if refusal is not None:
        refusal.headers = headers
        return refusal
    return Decision(True, headers=headers)


def _reset(seconds: float) -> str:
    """OpenAI's x-ratelimit-reset-* format: '1s', '6m0s', '1h2m3s'."""
    total = max(0, math.ceil(seconds))
    if total < 60:  # a minute's window: the usual case
        return f"{total}s"
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes or hours else "") + f"{secs}s"


_LAST = "SELECT ts, total FROM rate_log WHERE key_id = ? AND kind = ? ORDER BY ts DESC, total DESC LIMIT 1"
_FIRST = ("SELECT ts, total - units FROM rate_log WHERE key_id = ? AND kind = ? AND ts > ? "
          "ORDER BY ts, total LIMIT 1")
_INSERT = "INSERT INTO rate_log (key_id, kind, ts, total, units) VALUES (?, ?, ?, ?, ?)"


def _last(conn: sqlite3.Connection, key_id: str, kind: int) -> tuple[float | None, int]:
    """The key's newest row of `kind`: its time and running total (None, 0 without one)."""
    row = conn.execute(_LAST, (key_id, kind)).fetchone()
    return (None, 0) if row is None else (float(row[0]), int(row[1]))


def _window(conn: sqlite3.Connection, key_id: str, kind: int, since: float, total: int) -> tuple[int, float | None]:
    """What the key's rows of `kind` newer than `since` add up to, and the oldest one's time."""
    row = conn.execute(_FIRST, (key_id, kind, since)).fetchone()
    return (0, None) if row is None else (total - int(row[1]), float(row[0]))


def _record(conn: sqlite3.Connection, key_id: str, kind: int, units: int, now: float, last: tuple[float | None, int]
            ) -> None:
    ts, total = last
    # Never before the key's newest row (a clock read before another worker's commit): totals stay in time order.
    conn.execute(_INSERT, (key_id, kind, now if ts is None else max(now, ts), total + units, units))


def _record_tokens(conn: sqlite3.Connection, key_id: str, tokens: int, now: float) -> None:
    _record(conn, key_id, TOKENS, tokens, now, _last(conn, key_id, TOKENS))


class RateLimits(Protocol):
    """What the server asks of a rate limiter."""

    async def admit(self, key_id: str, policy: KeyPolicy, *, now: float, units: int = 1) -> Decision:
        """Admit `units` requests now (recording them) or refuse them with how long to wait."""

    async def record_tokens(self, key_id: str, tokens: int, *, now: float) -> None:
        """Count the tokens a request of the key spent, for its tokens-per-minute window."""

    def record_tokens_now(self, key_id: str, tokens: int, *, now: float) -> bool:
        """`record_tokens` at once if it needs no wait (True: counted), else False (then await `record_tokens`)."""


class RateLimiter:
    """`RateLimits` in the SQLite database at `path` (`hot`: the process's hot-path transactions on it)."""

    def __init__(self, path: Path, hot: HotPath | None = None) -> None:
        self.path = path
        self.hot = hot or HotPath(path)
        self._admitted = 0

    async def admit(self, key_id: str, policy: KeyPolicy, *, now: float, units: int = 1) -> Decision:
        """A request is admitted as one unit at the door; a request that fans out is charged its other upstream
        calls as more units when the service knows them (service.record)."""
        self.hot.ensure(SCHEMA, migrate)
        self._admitted += 1
        trim = self._admitted % TRIM_EVERY == 0
        return await self.hot.run(lambda conn: self._admit(conn, key_id, policy, now, units, trim))

    async def record_tokens(self, key_id: str, tokens: int, *, now: float) -> None:
        if tokens > 0:
            self.hot.ensure(SCHEMA, migrate)
            await self.hot.run(lambda conn: _record_tokens(conn, key_id, tokens, now))

    def record_tokens_now(self, key_id: str, tokens: int, *, now: float) -> bool:
        if tokens <= 0:
            return True
        self.hot.ensure(SCHEMA, migrate)
        return self.hot.run_now(lambda conn: _record_tokens(conn, key_id, tokens, now)) is not None

    @staticmethod
    def _admit(conn: sqlite3.Connection, key_id: str, policy: KeyPolicy, now: float, units: int, trim: bool
               ) -> Decision:
        last = _last(conn, key_id, REQUESTS)
        minute = day = tokens = UNMEASURED  # the windows the key's policy does not limit are not read
        if policy.rpm is not None:
            minute = Window(*_window(conn, key_id, REQUESTS, now - MINUTE, last[1]))
        if policy.rpd is not None:
            day = Window(*_window(conn, key_id, REQUESTS, now - DAY, last[1]))
        if policy.tpm is not None:
            tokens = Window(*_window(conn, key_id, TOKENS, now - MINUTE, _last(conn, key_id, TOKENS)[1]))
        decision = decide(policy, units, now, minute, day, tokens)
        if not decision.allowed:
            return decision
        _record(conn, key_id, REQUESTS, units, now, last)
        if trim:  # what no window of the key reads any more (a policy given rpd later counts from here)
            conn.execute("DELETE FROM rate_log WHERE key_id = ? AND kind = ? AND ts <= ?",
                         (key_id, REQUESTS, now - (DAY if policy.rpd is not None else MINUTE)))
            conn.execute("DELETE FROM rate_log WHERE key_id = ? AND kind = ? AND ts <= ?",
                         (key_id, TOKENS, now - MINUTE))
        return decision


def prune(path: Path, *, now: float) -> int:
    """Delete the rows no window reads any more, of every key (the keys not admitted lately keep theirs till here)."""
    with connect(path, SCHEMA, immediate=True, migrate=migrate) as conn:
        return int(conn.execute("DELETE FROM rate_log WHERE ts <= ? OR (kind = ? AND ts <= ?)",
                                (now - DAY, TOKENS, now - MINUTE)).rowcount)
