"""Team administration, one implementation for two front ends: `cfai keygen|keys|usage` and the /v1/admin routes.

Imports store, core and errors; synchronous (SQLite), so the routes call it in a worker thread. Keys are shown
as `key_view` (never the secret or its hash); a secret leaves only in the answer of create and rotate. With
`keep_admin` (the HTTP routes, while keys are required) the last active admin key cannot be revoked or lose
its admin scope: over HTTP that would lock the team out of administration with no shell to mint another.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

from cfai_cli.core.admin import KeyCreate, KeyUpdate, duration_seconds
from cfai_cli.core.cost import day_start
from cfai_cli.core.printable import printable
from cfai_cli.errors import InvalidRequest, NotFound
from cfai_cli.store import usage_query
from cfai_cli.store.keys import DEFAULT_SCOPES, SCOPES, KeyPolicy, KeyRecord, KeyStore
from cfai_cli.store.usage import GROUPS, AccountToday, UsageLog, UsageSummary, accounts_today, parse_since
from cfai_cli.store.usage_query import BUCKETS, MAX_BUCKETS, SERIES_BY, bucket_span

DEFAULT_PAGE = 100
MAX_PAGE = 1000  # keys per page and usage groups per answer: an answer's size is bounded
DEFAULT_SERIES = 8  # series of the usage chart apart before the rest is merged (at most usage_query.MAX_SERIES)


def key_view(record: KeyRecord) -> dict[str, Any]:
    """A key as `cfai keys show --json` and GET /v1/admin/keys/{id} show it: its policy, never its secret."""
    p = record.policy
    return {"object": "api_key", "id": record.id, "name": record.name, "hint": record.hint,
            "created_at": record.created_at, "revoked_at": record.revoked_at, "expires_at": p.expires_at,
            "active": record.active(time.time()), "scopes": sorted(p.scopes), "models": list(p.models),
            "rpm": p.rpm, "rpd": p.rpd, "tpm": p.tpm, "cache": p.cache,
            "budget_neurons_per_day": p.budget_neurons_per_day, "budget_usd_per_month": p.budget_usd_per_month}


def _scopes(chosen: Sequence[str] | None) -> frozenset[str]:
    if not chosen:
        return DEFAULT_SCOPES
    return frozenset(SCOPES) if "all" in chosen else frozenset(chosen)


def _expiry(expires_in: str | None, expires_at: int | None, now: float) -> int | None:
    if expires_in is not None and expires_at is not None:
        raise InvalidRequest("Give expires_in or expires_at, not both.", param="expires_at", code="invalid_value")
    return int(now) + duration_seconds(expires_in) if expires_in is not None else expires_at


def policy_of(body: KeyCreate, *, now: float) -> KeyPolicy:
    return KeyPolicy(scopes=_scopes(body.scopes), models=tuple(body.models), rpm=body.rpm, rpd=body.rpd,
                     tpm=body.tpm, expires_at=_expiry(body.expires_in, body.expires_at, now), cache=body.cache,
                     budget_neurons_per_day=body.budget_neurons_per_day,
                     budget_usd_per_month=body.budget_usd_per_month)


def create_key(store: KeyStore, name: str, policy: KeyPolicy) -> tuple[str, KeyRecord]:
    """Mint a key: the secret (to be shown once) and its record."""
    return store.create(name, policy)


def get_key(store: KeyStore, key_id: str) -> KeyRecord:
    record = store.get(key_id)
    if record is None:
        raise NotFound(f"No key with id {printable(key_id, 64)!r}.", param="id", code="key_not_found")
    return record


def find_key(store: KeyStore, ref: str) -> KeyRecord:
    """The key `ref` names, by id or by name (the CLI's `cfai keys ... NAME`). A rotated key leaves its revoked
    predecessor under the same name, so active keys win; two that still match is an error listing their ids."""
    record = store.get(ref)
    if record is not None:
        return record
    named = [r for r in store.list() if r.name == ref]
    now = time.time()
    active = [r for r in named if r.active(now)]
    matches = active or named
    if not matches:
        raise NotFound(f"No key with id or name {printable(ref, 64)!r}; `cfai keys list` shows them.", param="id",
                       code="key_not_found")
    if len(matches) > 1:
        raise InvalidRequest(f"{len(matches)} keys are named {printable(ref, 64)!r}: "
                             f"{', '.join(r.id for r in matches)}; give one of these ids.", param="id",
                             code="ambiguous_key_name")
    return matches[0]


def list_keys(store: KeyStore, *, limit: int = DEFAULT_PAGE, after: str | None = None) -> dict[str, Any]:
    """A page of keys, oldest first, after the key `after` (the last id of the previous page)."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be from 1 to {MAX_PAGE}.", param="limit", code="invalid_value")
    records = store.list()
    start = 0
    if after is not None:
        ids = [r.id for r in records]
        if after not in ids:
            raise InvalidRequest(f"No key with id {printable(after, 64)!r} to list after.", param="after",
                                 code="invalid_value")
        start = ids.index(after) + 1
    page = records[start:start + limit]
    return {"object": "list", "data": [key_view(r) for r in page],
            "first_id": page[0].id if page else None, "last_id": page[-1].id if page else None,
            "has_more": start + limit < len(records)}


def update_key(store: KeyStore, key_id: str, body: KeyUpdate, *, keep_admin: bool = False,
               now: float | None = None) -> KeyRecord:
    """Change the fields sent in `body` (null resets one to its default); the key's secret stays."""
    old = get_key(store, key_id)
    sent = body.model_fields_set
    now = time.time() if now is None else now
    changes: dict[str, Any] = {}
    if "scopes" in sent:
        changes["scopes"] = _scopes(body.scopes)
    if "models" in sent:
        changes["models"] = tuple(body.models or ())
    for name, value in (("rpm", body.rpm), ("rpd", body.rpd), ("tpm", body.tpm),
                        ("budget_neurons_per_day", body.budget_neurons_per_day),
                        ("budget_usd_per_month", body.budget_usd_per_month)):
        if name in sent:
            changes[name] = value
    if "expires_in" in sent or "expires_at" in sent:
        changes["expires_at"] = _expiry(body.expires_in, body.expires_at, now)
    if "cache" in sent:
        changes["cache"] = bool(body.cache)
    updated = store.update(key_id, name=body.name if "name" in sent else None,
                           policy=replace(old.policy, **changes), keep_admin=keep_admin)
    if updated is None:  # keys are never deleted, so only a database swapped underneath gets here
        raise NotFound(f"No key with id {printable(key_id, 64)!r}.", param="id", code="key_not_found")
    return updated


def rotate_key(store: KeyStore, key_id: str) -> tuple[str, KeyRecord]:
    """A new secret (and id) with the same name and policy; the old one stops working at once."""
    rotated = store.rotate(key_id)
    if rotated is None:
        get_key(store, key_id)  # an unknown id is a 404 of its own
        raise NotFound(f"No active key with id {key_id!r}: it is revoked or expired, and only an active key can "
                       "be rotated.", param="id", code="key_not_active")
    return rotated


def revoke_key(store: KeyStore, key_id: str, *, keep_admin: bool = False) -> KeyRecord:
    """Revoke an active key at once (also in running servers); 404 if there is no active key with that id."""
    if not store.revoke(key_id, keep_admin=keep_admin):
        get_key(store, key_id)
        raise NotFound(f"No active key with id {key_id!r}: it is already revoked.", param="id",
                       code="key_not_active")
    return get_key(store, key_id)


def usage_summary(log: UsageLog, *, since: str = "7d", by: str = "model",
                  now: float | None = None) -> list[UsageSummary]:
    """`cfai usage`: the usage log since `since` (30m, 12h, 7d, 2w or a date), grouped by `by`; the names
    clients chose (models, routes) are made printable."""
    if by not in GROUPS:
        raise InvalidRequest(f"by must be one of {', '.join(GROUPS)}.", param="by", code="invalid_value")
    try:
        start = parse_since(since, now=now)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="since", code="invalid_value") from None
    return [replace(r, group=printable(r.group)) for r in log.summarise(since=start, by=by)]


def usage_accounts(log: UsageLog, *, now: float | None = None) -> list[AccountToday]:
    """Each Cloudflare account's neurons since 00:00 UTC against its free daily allocation (docs/cost.md)."""
    at = time.time() if now is None else now
    return [replace(a, account=printable(a.account)) for a in accounts_today(log.rows(since=day_start(at)), now=at)]


def usage_view(rows: list[UsageSummary], *, since: str, by: str, limit: int = MAX_PAGE,
               accounts: list[AccountToday] | None = None) -> dict[str, Any]:
    """GET /v1/admin/usage's answer: the summary rows (as `cfai usage --json` prints them), at most `limit`, and
    each account's free allocation used today."""
    return {"object": "list", "since": since, "by": by, "data": [asdict(r) for r in rows[:limit]],
            "has_more": len(rows) > limit, "accounts": [asdict(a) for a in accounts or []]}


def _series_labels(groups: Sequence[str], by: str, store: KeyStore, now: float) -> dict[str, tuple[str, str | None]]:
    """Group -> (label, key name). Keys are labelled by name; a revoked or unknown key by its id (a rotated
    key's name belongs to its successor), and two active keys of one name get their ids beside it."""
    if by != "key":  # "(none)": requests that name no model (admin, model lists, failures before one was read)
        return {g: ("(no model)" if g == "(none)" else printable(g), None) for g in groups}
    records = {r.id: r for r in store.list()}
    named = {g: printable(records[g].name, 64) for g in groups if g in records}
    active = {g for g in named if records[g].active(now)}
    counts: dict[str, int] = {}
    for g in active:
        counts[named[g]] = counts.get(named[g], 0) + 1
    return {g: ((named[g] if counts[named[g]] == 1 else f"{named[g]} ({g})") if g in active else printable(g),
                named.get(g)) for g in groups}


def usage_series(log: UsageLog, store: KeyStore, *, since: str = "24h", by: str = "model", bucket: str = "auto",
                 top: int = DEFAULT_SERIES, now: float | None = None) -> dict[str, Any]:
    """GET /v1/admin/usage/series: requests, neurons and cost per hour or day and per model or key (by name),
    aggregated in SQL and bounded (store.usage_query); `bucket` auto is hours up to two days, days beyond."""
    if by not in SERIES_BY:
        raise InvalidRequest(f"by must be one of {', '.join(SERIES_BY)}.", param="by", code="invalid_value")
    if bucket not in ("auto", *BUCKETS):
        raise InvalidRequest(f"bucket must be one of auto, {', '.join(BUCKETS)}.", param="bucket",
                             code="invalid_value")
    at = time.time() if now is None else now
    try:
        start = min(parse_since(since, now=at), at)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="since", code="invalid_value") from None
    chosen = bucket if bucket != "auto" else "hour" if at - start <= 2 * 86400 else "day"
    if bucket_span(start, at, chosen)[1] > MAX_BUCKETS:
        raise InvalidRequest(f"since={since} with {chosen} buckets makes more than {MAX_BUCKETS} of them: choose a "
                             "shorter period or day buckets.", param="since", code="invalid_value")
    found = usage_query.series(log, start=start, end=at, by=by, bucket=chosen, top=top)
    labels = _series_labels([s.group for s in found.series if not s.other], by, store, at)
    out = []
    for s in found.series:
        label, name = (f"other ({s.merged})", None) if s.other else labels[s.group]
        out.append({"group": printable(s.group), "label": label, "name": name, "other": s.other, "merged": s.merged,
                    **asdict(s.totals),
                    "points": {"requests": s.requests, "neurons": s.neurons, "cost_usd": s.cost_usd}})
    return {"object": "usage.series", "since": since, "by": by, "bucket": chosen, "bucket_seconds": BUCKETS[chosen],
            "start": start, "end": at, "buckets": found.buckets, "series": out, "groups": found.groups,
            "has_more": any(s.other for s in found.series),
            "total": asdict(found.total), "accounts": [asdict(a) for a in usage_accounts(log, now=at)]}


def last_used(log: UsageLog, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Key objects with `last_used_at`: their last request in the usage log (null: none there, or past retention)."""
    seen = usage_query.last_used(log, [k["id"] for k in keys])
    return [{**k, "last_used_at": seen.get(k["id"])} for k in keys]
