"""Who may call the proxy: key authentication, scopes per route, model patterns, spend budgets and rate limits.

Imports starlette, anyio, store, core and errors; the innermost piece of the app's one layer
(server.front), in front of every route but
/health (whose `?detail=1` needs an admin key). Keys are checked against the hashed store on every
request (through a cache that any commit to the database drops), so revoking or expiring a key takes
effect at once, even in a running server. Keys are never accepted in query strings.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
from starlette.types import Message, Scope

from cfai_cli.errors import (
    AuthenticationError,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
)
from cfai_cli.server.routes.health import HEALTH_PATHS, wants_detail
from cfai_cli.server.routes.ui import OPEN_PATHS as UI_OPEN_PATHS
from cfai_cli.server.scope import request_record
from cfai_cli.service.grants import grant
from cfai_cli.service.record import RequestRecord
from cfai_cli.store.budgets import BudgetLedger, Budgets
from cfai_cli.store.keys import CacheUnavailable, KeyRecord, KeyStore
from cfai_cli.store.limit_rule import RateLimits
from cfai_cli.store.sql import SqliteDatabase

# The browser page and its static files carry no data; its data endpoints (/ui/api/*) need a key.
OPEN_PATHS = frozenset({"/health", "/v1/health", "/openapi.json", "/v1/openapi.json", *UI_OPEN_PATHS})
_SCOPES = (("chat/", "chat"), ("responses", "chat"), ("messages", "chat"), ("completions", "chat"),
           ("tokenize", "chat"), ("moderations", "chat"),
           ("embeddings", "embeddings"), ("rerank", "embeddings"), ("v2/rerank", "embeddings"),
           ("images/", "images"), ("audio/", "audio"), ("models", "models"), ("route-check", "models"),
           ("metrics", "admin"), ("health", "admin"), ("admin/", "admin"),
           ("ui/api/models", "models"), ("ui/api/usage", "admin"))

SPENDING_SCOPES = frozenset({"chat", "embeddings", "images", "audio"})  # routes whose requests call Workers AI
# ... except these, which count or read what is stored and call no model (a key out of budget may still use them).
_NOT_SPENDING = ("tokenize", "messages/count_tokens", "images/files/")


def spends(scope: Scope, needed: str | None) -> bool:
    """Whether a request on this path can spend neurons: a POST to a route of a spending scope that runs a model."""
    path = scope["path"].removeprefix("/v1/").lstrip("/")
    return (needed in SPENDING_SCOPES and scope.get("method") == "POST"
            and not path.startswith(_NOT_SPENDING))


def presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key from `Authorization: Bearer`, `api-key` (Azure-style) or `x-api-key`."""
    found: dict[bytes, bytes] = {}
    for name, value in headers:
        if name in (b"authorization", b"api-key", b"x-api-key"):
            found.setdefault(name, value)
    auth = found.get(b"authorization")
    if auth is not None:
        scheme, _, token = auth.decode("latin-1").strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    for name in (b"api-key", b"x-api-key"):
        if name in found and found[name].strip():
            return found[name].decode("latin-1").strip()
    return None


def scope_for(path: str) -> str | None:
    """The scope a route needs (None for paths that are not endpoints: they answer 404 anyway)."""
    tail = path[4:] if path.startswith("/v1/") else path[1:]
    return next((scope for prefix, scope in _SCOPES if tail.startswith(prefix)), None)


class KeyAuth:
    def __init__(self, keys: KeyStore, limiter: RateLimits, *, max_in_flight: int,
                 open_prefixes: tuple[str, ...] = (), ledger: Budgets | None = None,
                 hold_seconds: float = 360.0, cache: Callable[[], dict[str, Any]] = dict) -> None:
        if ledger is None:  # the app passes its own; a bare KeyAuth (tests) keeps the ledger beside the keys
            assert isinstance(keys.db, SqliteDatabase), "a KeyAuth over a shared store is given its ledger"
            ledger = BudgetLedger(keys.db.path)
        self.ledger = ledger
        # A budget hold outlives its request only if the worker died: the request timeout and a margin.
        self.hold_seconds = hold_seconds
        self.cache = cache  # the service context's cache (the catalogue's prices, once fetched: service.cost)
        self.keys = keys
        self.verified = keys.cache()
        self.limiter = limiter
        self.max_in_flight = max_in_flight
        self.in_flight: dict[str, int] = {}
        # Paths anyone may GET, e.g. hosted images whose unguessable URL is the credential.
        self.open_prefixes = open_prefixes

    def is_open(self, scope: Scope) -> bool:
        """A path anyone may call: no key is asked for."""
        if scope["path"] in HEALTH_PATHS and wants_detail(scope.get("query_string", b"")):
            return False  # the operator's view of /health: an admin key, like /metrics
        return scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS" or bool(
            self.open_prefixes and scope["method"] in ("GET", "HEAD") and scope["path"].startswith(self.open_prefixes))

    async def admit(self, scope: Scope) -> tuple[KeyRecord, list[tuple[bytes, bytes]]]:
        """The request's key, counted in flight, and the x-ratelimit-* headers its answer carries; a CfaiError is
        the refusal to answer (server.front's layer calls this for every request `is_open` does not let through, then
        `granted`, then `leave` once the request is done)."""
        record, extra = await self._admit(scope)
        # As bytes from store.limit_rule.decide, appended to the raw list: MutableHeaders' update rebuilt the list per
        # header (~49k of the ~600k instructions rpm+tpm added, docs/performance.md 2026-12-02).
        self._enter(record)
        return record, extra

    def granted(self, scope: Scope, record: KeyRecord) -> None:
        scope.setdefault("state", {})["cfai_key"] = record
        self._grant(request_record(scope), record)

    @staticmethod
    def limit_headers(message: Message, extra: list[tuple[bytes, bytes]]) -> None:
        """An answer's start with the key's x-ratelimit-* headers, in place of any the route set."""
        replaced = {name for name, _ in extra}
        message["headers"] = [*(header for header in message.get("headers", ())
                                if header[0].lower() not in replaced), *extra]

    def _enter(self, record: KeyRecord) -> None:
        """Count the key's request in flight, refusing one past the per-key cap (per process)."""
        busy = self.in_flight.get(record.id, 0)
        if busy >= self.max_in_flight:
            raise RateLimited(f"This key already has {busy} requests in flight (the limit per key is "
                              f"{self.max_in_flight}); wait for some to finish.", retry_after=1,
                              code="too_many_requests_in_flight")
        self.in_flight[record.id] = busy + 1

    def leave(self, record: KeyRecord) -> None:
        left = self.in_flight.get(record.id, 1) - 1
        if left > 0:
            self.in_flight[record.id] = left
        else:
            self.in_flight.pop(record.id, None)

    def _grant(self, request: RequestRecord, key: KeyRecord) -> None:
        """What the key may do, into the request's record (service.grants, shared with the batch executor)."""
        grant(request, key, self.limiter, self.ledger, cache=self.cache, hold_seconds=self.hold_seconds)

    async def _admit(self, scope: Scope) -> tuple[KeyRecord, list[tuple[bytes, bytes]]]:
        key = presented_key(scope["headers"])
        if key is None:
            raise AuthenticationError(
                "You didn't provide an API key. Send 'Authorization: Bearer <key>' (or 'x-api-key: <key>') with a key "
                "made by `cfai keygen`.",
                code="missing_api_key")
        try:
            if self.verified.local:
                record = self.verified.verify(key)  # on the loop: microseconds, and revocation still counts at once
            else:  # PostgreSQL: a round trip per lookup (the keys' epoch), so off the event loop
                record = await anyio.to_thread.run_sync(self.verified.verify, key)
        except CacheUnavailable:
            record = await anyio.to_thread.run_sync(self.keys.verify, key)
        if record is None:
            raise AuthenticationError("Incorrect, revoked or expired API key. Make one with `cfai keygen`.")
        # Known from here on, so a refusal below (scope, model, rate) is logged against the key.
        scope.setdefault("state", {})["cfai_key"] = record
        needed = scope_for(scope["path"])
        if needed is not None and needed not in record.policy.scopes:
            raise PermissionDenied(
                f"This key may not use the {needed} endpoints (its scopes: {', '.join(sorted(record.policy.scopes))}).",
                code="insufficient_scope")
        policy = record.policy
        # Before the rate limits (a refused request must not use up a rate window), and only where a request can
        # spend neurons: a key out of budget may still list models and, with admin, look at its usage.
        if policy.budgeted and spends(scope, needed):
            refusal = await self.ledger.check(record.id, per_day=policy.budget_neurons_per_day,
                                              per_month_usd=policy.budget_usd_per_month, now=time.time())
            if refusal is not None:
                raise QuotaExceeded(refusal.message, retry_after=refusal.retry_after)
        if not record.policy.limited:
            return record, []
        decision = await self.limiter.admit(record.id, record.policy, now=time.time())
        if not decision.allowed:
            error = RateLimited(f"Rate limit reached: {decision.reason}. Try again in {decision.retry_after:.0f} s.",
                                retry_after=decision.retry_after, code="rate_limit_exceeded")
            error.headers = decision.headers
            raise error
        return record, decision.raw
