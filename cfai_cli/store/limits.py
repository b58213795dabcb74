"""Per-key rate limits (requests per minute and day, tokens per minute), exact across processes.

Imports stdlib and store.db. Each admission is one SQLite write transaction (BEGIN IMMEDIATE), so the
check and the insert cannot interleave, whether the other requests come from this worker or another.
Windows slide: a request counts for exactly 60 s (or 24 h) after it was admitted.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from cfai_cli.store.db import connect
from cfai_cli.store.keys import KeyPolicy

MINUTE, DAY = 60.0, 86400.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS rate_requests (key_id TEXT NOT NULL, ts REAL NOT NULL);
CREATE INDEX IF NOT EXISTS rate_requests_key_ts ON rate_requests (key_id, ts);
CREATE TABLE IF NOT EXISTS rate_tokens (key_id TEXT NOT NULL, ts REAL NOT NULL, tokens INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS rate_tokens_key_ts ON rate_tokens (key_id, ts);
"""


@dataclass(slots=True)
class Decision:
    allowed: bool
    retry_after: float = 0.0
    reason: str = ""
    headers: dict[str, str] = field(default_factory=dict)


def _reset(seconds: float) -> str:
    """OpenAI's x-ratelimit-reset-* format: '1s', '6m0s', '1h2m3s'."""
    total = max(0, math.ceil(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes or hours else "") + f"{secs}s"


def _window(conn: sqlite3.Connection, key_id: str, since: float) -> tuple[int, float | None]:
    count, oldest = conn.execute("SELECT COUNT(*), MIN(ts) FROM rate_requests WHERE key_id = ? AND ts > ?",
                                 (key_id, since)).fetchone()
    return int(count), oldest


class RateLimiter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._admitted = 0

    def admit(self, key_id: str, policy: KeyPolicy, *, now: float, units: int = 1) -> Decision:
        """Admit `units` requests now (recording them) or refuse them with how long to wait.

        A request is admitted as one unit at the door; a request that fans out is charged its other upstream
        calls as more units when the service knows them (service.record)."""
        headers: dict[str, str] = {}
        with connect(self.path, _SCHEMA, immediate=True) as conn:
            refusal: Decision | None = None
            described = False
            for limit, span, label in ((policy.rpm, MINUTE, "requests per minute"),
                                       (policy.rpd, DAY, "requests per day")):
                if limit is None:
                    continue
                used, oldest = _window(conn, key_id, now - span)
                reset = (oldest + span - now) if oldest is not None else span
                if not described:  # the headers describe the per-minute window when there is one
                    described = True
                    headers["x-ratelimit-limit-requests"] = str(limit)
                    headers["x-ratelimit-remaining-requests"] = str(max(0, limit - used - units))
                    headers["x-ratelimit-reset-requests"] = _reset(reset)
                if used + units > limit and refusal is None:
                    headers["x-ratelimit-remaining-requests"] = "0"
                    refusal = Decision(False, max(reset, 0.001), f"this key's limit of {limit} {label}")
            if policy.tpm is not None:
                tokens, oldest = conn.execute(
                    "SELECT COALESCE(SUM(tokens), 0), MIN(ts) FROM rate_tokens WHERE key_id = ? AND ts > ?",
                    (key_id, now - MINUTE)).fetchone()
                reset = (oldest + MINUTE - now) if oldest is not None else 0.0
                headers["x-ratelimit-limit-tokens"] = str(policy.tpm)
                headers["x-ratelimit-remaining-tokens"] = str(max(0, policy.tpm - int(tokens)))
                headers["x-ratelimit-reset-tokens"] = _reset(reset)
                if tokens >= policy.tpm and refusal is None:
                    refusal = Decision(False, max(reset, 0.001),
                                       f"this key's limit of {policy.tpm} tokens per minute")
            if refusal is not None:
                refusal.headers = headers
                return refusal
            conn.executemany("INSERT INTO rate_requests (key_id, ts) VALUES (?, ?)", [(key_id, now)] * units)
            before, self._admitted = self._admitted, self._admitted + units
            if before // 500 != self._admitted // 500:  # keep the tables small: nothing older than a day matters
                conn.execute("DELETE FROM rate_requests WHERE ts <= ?", (now - DAY,))
                conn.execute("DELETE FROM rate_tokens WHERE ts <= ?", (now - MINUTE,))
        return Decision(True, headers=headers)

    def record_tokens(self, key_id: str, tokens: int, *, now: float) -> None:
        if tokens > 0:
            with connect(self.path, _SCHEMA, immediate=True) as conn:
                conn.execute("INSERT INTO rate_tokens (key_id, ts, tokens) VALUES (?, ?, ?)",
                             (key_id, now, tokens))
