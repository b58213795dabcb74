"""The local exchange log: one row per exchange `cfai chat` makes (one-shot, --responses, offline, each turn of
the interactive chat), for `cfai logs` and for `-c/--continue` and `--cid`.

Imports stdlib and store.db. It is a file of its own, `logs.db` in the data directory (0600): the proxy's writers
never wait on it, and a broken log costs the history, never the keys. Messages are kept in chat-completions
form whatever API carried them (core.history bounds them first). Each write prunes what is past the retention
in the same transaction (two indexed deletes that usually find nothing), so the log needs no separate pass.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cfai_cli.store.db import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS exchanges (
    id INTEGER PRIMARY KEY,
    cid TEXT NOT NULL,
    ts REAL NOT NULL,
    api TEXT NOT NULL,
    model_asked TEXT NOT NULL,
    model TEXT,
    system TEXT,
    prompt TEXT NOT NULL,
    messages TEXT NOT NULL,
    answer TEXT NOT NULL,
    tool_calls TEXT NOT NULL,
    attachments TEXT NOT NULL,
    duration_ms REAL NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    neurons REAL,
    neurons_estimated INTEGER NOT NULL DEFAULT 0,
    response_id TEXT
);
CREATE INDEX IF NOT EXISTS exchanges_cid ON exchanges (cid, id);
CREATE INDEX IF NOT EXISTS exchanges_ts ON exchanges (ts);
"""
_JSON_COLUMNS = ("messages", "tool_calls", "attachments")
Json = dict[str, Any]
# Seconds a locked log is waited for: another cfai's write takes milliseconds, and a one-shot must not hang on
# a file someone holds open in a transaction (the exchange is then not logged, with a warning).
WAIT = 2.0
# WAL with synchronous=NORMAL: a commit is not synced on its own; the checkpoint the last connection's close runs
# (every connection to logs.db is short: a one-shot's write, one `cfai logs`) syncs the WAL and then logs.db, so the
# row is on disk before that cfai exits, as with FULL. WAL + NORMAL cannot corrupt the file on a power cut (it can
# lose commits not yet checkpointed). Measured on `cfai chat --offline hi` (strace -f -T, docs/performance.md,
# "One-shot CLI round 7"): FULL made 5 fdatasyncs a one-shot (the new WAL's header, its directory, the commit, the
# checkpoint's WAL and logs.db), NORMAL makes 4; ~0.3 ms each on a quiet disk, ~3.7 ms while other processes write.
SYNCHRONOUS: Literal["FULL", "NORMAL"] = "NORMAL"


@dataclass(frozen=True, slots=True)
class Exchange:
    """One exchange: what this turn added (chat form), what came back, and what it cost."""

    cid: str  # the conversation it belongs to
    ts: float
    api: str  # "chat" or "responses"
    model_asked: str  # the name it was asked with (an alias, an id), what `-c` asks again
    model: str | None  # the Workers AI model that answered (None: unknown)
    system: str | None  # the system prompt this turn set (None: none, or the conversation's kept)
    prompt: str  # the user's text this turn (for display and search)
    messages: list[Json]  # the request messages this turn added, images over a bound as placeholders
    answer: str
    tool_calls: list[Json] = field(default_factory=list)  # [{"name", "arguments"}]
    attachments: list[Json] = field(default_factory=list)  # [{"name", "kind"}]
    duration_ms: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    neurons: float | None = None
    neurons_estimated: bool = False
    response_id: str | None = None  # the stored Response, when the Responses API answered
    id: int | None = None  # the row's id, once written

    def as_json(self) -> Json:
        return {"id": self.id, "cid": self.cid, "ts": self.ts, "api": self.api, "model_asked": self.model_asked,
                "model": self.model, "system": self.system, "prompt": self.prompt, "messages": self.messages,
                "answer": self.answer, "tool_calls": self.tool_calls, "attachments": self.attachments,
                "duration_ms": self.duration_ms, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "neurons": self.neurons,
                "neurons_estimated": self.neurons_estimated, "response_id": self.response_id}


_COLUMNS = ("id", "cid", "ts", "api", "model_asked", "model", "system", "prompt", "messages", "answer", "tool_calls",
            "attachments", "duration_ms", "prompt_tokens", "completion_tokens", "neurons", "neurons_estimated",
            "response_id")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM exchanges"


def _row(values: Sequence[Any]) -> Exchange:
    data = dict(zip(_COLUMNS, values, strict=True))
    for name in _JSON_COLUMNS:
        data[name] = json.loads(data[name])
    data["neurons_estimated"] = bool(data["neurons_estimated"])
    return Exchange(**data)


@dataclass(frozen=True, slots=True)
class Retention:
    """How much of the log a write keeps: the newest rows, and their age (settings log_max_rows and
    log_retention_days)."""

    max_rows: int = 10_000  # the newest exchanges kept (0: no cap)
    days: float = 0  # exchanges older than this are deleted (0: no time limit)


class ExchangeLog:
    """The exchanges table of `logs.db` (created on first write, 0600 in a 0700 directory)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self, *, immediate: bool = False) -> AbstractContextManager[sqlite3.Connection]:
        # Columns a later cfai adds will come with a `migrate` (store.db.add_columns), as store.usage does.
        return connect(self.path, SCHEMA, immediate=immediate, wait=WAIT, synchronous=SYNCHRONOUS)

    def add(self, exchange: Exchange, retention: Retention, *, now: float) -> int:
        """Write one exchange and prune past `retention`, in one short transaction; returns its id."""
        values = [getattr(exchange, name) for name in _COLUMNS[1:]]
        for name in _JSON_COLUMNS:
            index = _COLUMNS.index(name) - 1
            values[index] = json.dumps(values[index], ensure_ascii=False)
        with self._connect(immediate=True) as conn:
            cur = conn.execute(f"INSERT INTO exchanges ({', '.join(_COLUMNS[1:])}) VALUES "
                               f"({', '.join('?' * (len(_COLUMNS) - 1))})", values)
            new_id = int(cur.lastrowid or 0)
            if retention.max_rows > 0:  # ids only grow, so the oldest rows are the lowest ids
                conn.execute("DELETE FROM exchanges WHERE id <= ?", (new_id - retention.max_rows,))
            if retention.days > 0:
                conn.execute("DELETE FROM exchanges WHERE ts < ?", (now - retention.days * 86400,))
        return new_id

    def recent(self, *, limit: int | None, query: str | None = None, cid: str | None = None,
               since: float | None = None) -> list[Exchange]:
        """The newest `limit` exchanges (None: all) matching the filters, oldest first.

        `query`: every word must appear (case-insensitive for ASCII) in the prompt, the system prompt or the
        answer. LIKE, not FTS5: the log is capped (10,000 rows by default), where a scan takes milliseconds
        and finds parts of words too.
        """
        where: list[str] = ["1"]
        args: list[Any] = []
        for word in (query or "").split():
            pattern = "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append("(prompt LIKE ? ESCAPE '\\' OR answer LIKE ? ESCAPE '\\' OR system LIKE ? ESCAPE '\\')")
            args += [pattern] * 3
        if cid is not None:
            where.append("cid = ?")
            args.append(cid)
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        sql = f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        if not self.path.exists():
            return []
        with self._connect() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [_row(r) for r in reversed(rows)]

    def conversation(self, cid: str) -> list[Exchange]:
        """Every exchange of conversation `cid`, in order ([] if unknown)."""
        return self.recent(limit=None, cid=cid)

    def latest_cid(self) -> str | None:
        if not self.path.exists():
            return None
        with self._connect() as conn:
            row = conn.execute("SELECT cid FROM exchanges ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else str(row[0])

    def cids_starting(self, prefix: str, *, limit: int = 5) -> list[str]:
        """Conversation ids that start with `prefix`, the most recently used first (for did-you-mean)."""
        if not self.path.exists():
            return []
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self._connect() as conn:
            rows = conn.execute("SELECT cid FROM exchanges WHERE cid LIKE ? ESCAPE '\\' GROUP BY cid "
                                "ORDER BY MAX(id) DESC LIMIT ?", (pattern, limit)).fetchall()
        return [str(r[0]) for r in rows]

    def counts(self) -> tuple[int, int]:
        """(exchanges, conversations) in the log."""
        if not self.path.exists():
            return 0, 0
        with self._connect() as conn:
            row = conn.execute("SELECT COUNT(*), COUNT(DISTINCT cid) FROM exchanges").fetchone()
        return int(row[0]), int(row[1])
