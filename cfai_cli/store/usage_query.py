"""The usage log aggregated in SQL: a time series of requests, neurons and cost per model or per key (the browser
page's usage view, GET /v1/admin/usage/series), and each key's last request (the Keys view).

Imports stdlib and store. The answer is bounded whatever the log holds: at most MAX_BUCKETS buckets and `top`
series (the biggest spenders) plus one "(other)" series for the rest; SQLite does the grouping, so Python never
sees more rows than buckets x (top + 1). Buckets are aligned to UTC hours or days (a day bucket starts at 00:00
UTC, when the free allocation resets); the first and last bucket of a period are partial.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cfai_cli.store.sql import Tx
from cfai_cli.store.usage import UsageLog

BUCKETS = {"hour": 3600, "day": 86400}
MAX_BUCKETS = 800  # 30 days of hours fit (721)
MAX_SERIES = 50
OTHER = "(other)"
# The name a row is grouped under, as store.usage.summarise names it.
_GROUP = {"model": "COALESCE(upstream_model, model, '(none)')", "key": "COALESCE(key_id, '(no key)')"}
SERIES_BY = tuple(_GROUP)
# SQL both engines run: COALESCE(SUM()) for SQLite's TOTAL, CASE for a boolean PostgreSQL will not add up.
_SUMS = ("COUNT(*), COALESCE(SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), 0), COALESCE(SUM(prompt_tokens), 0), "
         "COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(neurons), 0), "
         "COALESCE(SUM(CASE WHEN neurons_estimated <> 0 THEN neurons END), 0), COALESCE(SUM(cost_usd), 0)")


@dataclass(frozen=True, slots=True)
class Totals:
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    neurons: float = 0.0
    estimated_neurons: float = 0.0  # the part of `neurons` estimated from prices, not reported (core.cost)
    cost_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class Series:
    """One model's or key's usage: its totals over the period and its figures per bucket."""

    group: str  # the model id or key id ("(no key)" without auth; OTHER for the series merged)
    totals: Totals
    requests: list[int] = field(default_factory=list)
    neurons: list[float] = field(default_factory=list)
    cost_usd: list[float] = field(default_factory=list)
    merged: int = 1  # groups in this series: more than one only for OTHER
    other: bool = False  # the groups outside the top, merged (told by this flag: a client may name a model OTHER)


@dataclass(frozen=True, slots=True)
class UsageSeries:
    by: str
    bucket: str
    start: float
    end: float
    buckets: list[float]  # each bucket's start (Unix seconds, UTC-aligned), oldest first
    series: list[Series]  # the top groups by neurons then requests, then OTHER if any group was left out
    groups: int  # distinct groups in the period (more than the series shown when OTHER merged some)
    total: Totals


def _totals(values: Sequence[object]) -> Totals:
    requests, errors, prompt, completion, neurons, estimated, cost = values
    return Totals(int(requests), int(errors), int(prompt), int(completion),  # type: ignore[call-overload]
                  float(neurons), float(estimated), float(cost))  # type: ignore[arg-type]


def bucket_span(start: float, end: float, bucket: str) -> tuple[int, int]:
    """The first bucket's index and the number of buckets [start, end] covers (index = ts // width)."""
    width = BUCKETS[bucket]
    first = int(start // width)
    return first, int(end // width) - first + 1


def series(log: UsageLog, *, start: float, end: float, by: str, bucket: str, top: int) -> UsageSeries:
    """Requests, neurons and cost of the rows with start <= ts <= end, per `bucket` and per model or key (`by`),
    the `top` biggest groups apart and the rest merged into OTHER."""
    width = BUCKETS[bucket]
    first, count = bucket_span(start, end, bucket)
    if count > MAX_BUCKETS:
        raise ValueError(f"{count} {bucket} buckets; at most {MAX_BUCKETS}")
    if not 1 <= top <= MAX_SERIES:
        raise ValueError(f"top must be from 1 to {MAX_SERIES}")
    buckets = [float((first + i) * width) for i in range(count)]
    if not log.db.exists():
        return UsageSeries(by, bucket, start, end, buckets, [], 0, Totals())
    rows = f"SELECT {_GROUP[by]} AS g, * FROM usage_log WHERE ts >= ? AND ts <= ?"
    with log.db.transaction() as conn:  # one transaction: the three reads agree
        ranked = conn.execute(f"SELECT g, {_SUMS} FROM ({rows}) AS r GROUP BY g ORDER BY 6 DESC, 2 DESC, g LIMIT ?",
                              (start, end, top)).fetchall()
        chosen = [str(r[0]) for r in ranked]
        marks = ",".join("?" * len(chosen)) or "NULL"
        overall = conn.execute(f"SELECT COUNT(DISTINCT g), {_SUMS} FROM ({rows}) AS r", (start, end)).fetchone()
        rest = conn.execute(f"SELECT COUNT(DISTINCT g), {_SUMS} FROM ({rows}) AS r WHERE g NOT IN ({marks})",
                            (start, end, *chosen)).fetchone()
        points = _points(conn, rows, marks, chosen, start=start, end=end, width=width)
    out = []
    for name, *values in [*ranked, *([(None, *rest[1:])] if rest[0] else [])]:
        figures = points.get(None if name is None else str(name), {})
        per = [figures.get(first + i, (0, 0.0, 0.0)) for i in range(count)]
        out.append(Series(OTHER if name is None else str(name), _totals(values), [p[0] for p in per],
                          [p[1] for p in per], [p[2] for p in per], merged=int(rest[0]) if name is None else 1,
                          other=name is None))
    return UsageSeries(by, bucket, start, end, buckets, out, int(overall[0]), _totals(overall[1:]))


def _points(conn: Tx, rows: str, marks: str, chosen: list[str], *, start: float, end: float,
            width: int) -> dict[str | None, dict[int, tuple[int, float, float]]]:
    """Per series (None: OTHER) and bucket index: requests, neurons and cost."""
    found = conn.execute(
        f"SELECT CASE WHEN g IN ({marks}) THEN g END AS s, FLOOR(ts / ?) AS b, COUNT(*), "
        f"COALESCE(SUM(neurons), 0), COALESCE(SUM(cost_usd), 0) FROM ({rows}) AS r GROUP BY s, b",
        (*chosen, width, start, end)).fetchall()
    out: dict[str | None, dict[int, tuple[int, float, float]]] = {}
    for name, index, requests, neurons, cost in found:
        out.setdefault(name, {})[int(index)] = (int(requests), float(neurons), float(cost))
    return out


def last_used(log: UsageLog, key_ids: Sequence[str]) -> dict[str, float]:
    """Each of `key_ids`' last request in the log (keys with none in it, e.g. past retention, are left out)."""
    if not key_ids or not log.db.exists():
        return {}
    marks = ",".join("?" * len(key_ids))
    with log.db.transaction() as conn:
        found = conn.execute(f"SELECT key_id, MAX(ts) FROM usage_log WHERE key_id IN ({marks}) GROUP BY key_id",
                             tuple(key_ids)).fetchall()
    return {str(key_id): float(ts) for key_id, ts in found}
