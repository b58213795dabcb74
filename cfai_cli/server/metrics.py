"""Prometheus metrics for the proxy, from `prometheus_client`: requests, errors, latency, tokens, retries.

Imports prometheus_client, starlette (route matching) and core. Every label has a bounded set of values:
`route` is the template of the matched route (`/v1/models/{model:path}`, or `unmatched`), never the
path a client sent; `status` is our own status; an error `code` beyond the first `MAX_CODES` seen folds
into `other`. With `cfai serve --workers N` each worker writes its values to files in a private directory
(`PROMETHEUS_MULTIPROC_DIR`, made by the parent) and /metrics sums every worker's files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, cast

import prometheus_client
import prometheus_client.multiprocess
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.routing import BaseRoute, Route
from starlette.types import Scope

from cfai_cli.core.printable import printable

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
UNMATCHED = "unmatched"
MAX_CODES = 64
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# prometheus_client leaves these three unannotated (its metric classes are typed): the signatures they have,
# so `mypy --strict` checks our calls instead of waving them through.
_disable_created_metrics = cast(Callable[[], None], prometheus_client.disable_created_metrics)
_multi_process_collector = cast(Callable[[CollectorRegistry, str], object],
                                prometheus_client.multiprocess.MultiProcessCollector)
_mark_process_dead = cast(Callable[[int, str], None], prometheus_client.multiprocess.mark_process_dead)

# `*_created` series double the output and mean nothing for a proxy's counters.
_disable_created_metrics()


class RouteLabels:
    """The template of the route a request matches: what Starlette's router recorded, else (for requests
    refused before routing, e.g. a 401) the same match done here; any other path is `unmatched`."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self._static: dict[str, str] = {}
        self._dynamic: list[Route] = []
        for route in routes:
            if isinstance(route, Route):
                if route.param_convertors:
                    self._dynamic.append(route)
                else:
                    self._static.setdefault(route.path, route.path)

    def __call__(self, scope: Scope) -> str:
        path = getattr(scope.get("route"), "path", None)
        if isinstance(path, str):
            return path
        found = self._static.get(scope["path"])
        if found is not None:
            return found
        return next((r.path for r in self._dynamic if r.path_regex.match(scope["path"])), UNMATCHED)


class _Bounded:
    """A label's values as seen, up to `limit` distinct ones; later newcomers share `other`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self.seen:
            return value
        if len(self.seen) >= self.limit:
            return "other"
        value = printable(value, 64)
        self.seen.add(value)
        return value


class Metrics:
    def __init__(self, *, retries: Callable[[], int] = lambda: 0, multiprocess_dir: str | None = None) -> None:
        self.retries = retries
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.requests = Counter("cfai_requests", "Requests answered by the proxy.", ["route", "status"], registry=r)
        self.errors = Counter("cfai_errors", "Requests answered with an error, by error code.", ["route", "code"],
                              registry=r)
        self.latency = Histogram("cfai_request_duration_seconds", "Time to the end of the answer (streams included).",
                                 ["route"], buckets=BUCKETS, registry=r)
        tokens = Counter("cfai_tokens", "Tokens reported in answers.", ["type"], registry=r)
        self._prompt, self._completion = tokens.labels("prompt"), tokens.labels("completion")
        self._retries = Counter("cfai_upstream_retries", "Retries of transient Workers AI failures.", registry=r)
        self._unauthenticated = Counter(
            "cfai_unauthenticated", "Requests refused for a missing or wrong key (counted here, not in the usage log).",
            registry=r)
        self._cache = Counter("cfai_cache_requests", "Requests the response cache took part in, by what it did "
                              "(hit, miss, refresh, bypass).", ["route", "result"], registry=r)
        self._cache_children: dict[tuple[str, str], Any] = {}
        # Redis failures by part (limits, cooldowns, cache: store.redis_outage), whatever `on_failure` made of them.
        self._coordination = Counter("cfai_coordination_failures", "Calls to the [coordination] Redis that failed, "
                                     "by part (limits, cooldowns, cache).", ["part"], registry=r)
        self._in_flight = Gauge("cfai_in_flight_requests", "Requests being answered now.", registry=r,
                                multiprocess_mode="livesum")
        self.in_flight = 0
        if multiprocess_dir is None:  # read when scraped: nothing to write per request
            self._in_flight.set_function(lambda: self.in_flight)
        self._retries_seen = 0
        self._codes = _Bounded(MAX_CODES)
        # Label children by their values: `.labels()` validates and locks on every call; these dicts are
        # bounded because every label value is.
        self._request_children: dict[tuple[str, int], Any] = {}
        self._error_children: dict[tuple[str, str], Any] = {}
        self._latency_children: dict[str, Any] = {}

    def started(self) -> None:
        self.in_flight += 1
        if self.multiprocess_dir is not None:
            self._in_flight.inc()

    def finished(self) -> None:
        self.in_flight -= 1
        if self.multiprocess_dir is not None:
            self._in_flight.dec()

    def coordination_failure(self, part: str) -> None:
        self._coordination.labels(part).inc()  # rare (warned about), and `part` is one of three names

    def unauthenticated(self) -> None:
        self._unauthenticated.inc()

    def observe(self, *, route: str, status: int, seconds: float, error_code: str | None,
                prompt_tokens: int, completion_tokens: int, cache: str | None = None) -> None:
        child = self._request_children.get((route, status))
        if child is None:
            child = self._request_children[(route, status)] = self.requests.labels(route, str(status))
        child.inc()
        if status >= 400:
            code = self._codes(error_code or str(status))
            error = self._error_children.get((route, code))
            if error is None:
                error = self._error_children[(route, code)] = self.errors.labels(route, code)
            error.inc()
        if cache is not None:  # hit, miss, refresh or bypass: four values at most (core.cache.Status)
            counted = self._cache_children.get((route, cache))
            if counted is None:
                counted = self._cache_children[(route, cache)] = self._cache.labels(route, cache)
            counted.inc()
        latency = self._latency_children.get(route)
        if latency is None:
            latency = self._latency_children[route] = self.latency.labels(route)
        latency.observe(seconds)
        if prompt_tokens:
            self._prompt.inc(prompt_tokens)
        if completion_tokens:
            self._completion.inc(completion_tokens)
        retries = self.retries()
        if retries > self._retries_seen:
            self._retries.inc(retries - self._retries_seen)
            self._retries_seen = retries

    def render(self) -> bytes:
        """The text exposition of this process, or of every worker's files in multi-process mode."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry(auto_describe=False)
        _multi_process_collector(registry, self.multiprocess_dir)  # registers itself in `registry`
        return generate_latest(registry)

    def close(self) -> None:
        """A worker going away: its in-flight gauge no longer counts (its counters still do)."""
        if self.multiprocess_dir is not None:
            _mark_process_dead(os.getpid(), self.multiprocess_dir)
