"""The router: which upstream serves a model name, failover along its chain, and who answered.

Imports httpx (through the clients), core.routing, core.catalog, errors and the two upstream clients.
A *lane* is one key of one upstream (an upstream with three tokens has three lanes). `Router.call`
tries the (target, lane) candidates of a chain in order, skipping resting ones; a failure of a kind the
target's policy names rests that lane (for that model, or for the whole lane when it is a quota or a
bad key) and moves on; any other failure (the client's own 4xx) is raised at once. Whoever answers is
written into `SERVED` for the proxy's headers and usage log.

`WorkersPool` offers the calls of `WorkersAIClient` over every Cloudflare account in order, so
embeddings, images, audio and the model list fail over between accounts without knowing about routes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from cfai_cli.core.catalog import resolve_model
from cfai_cli.core.routing import Cooldowns, RoutingConfig, Target, failure_kind, rests_target
from cfai_cli.errors import CfaiError, UpstreamError
from cfai_cli.upstream.openai_compat import OpenAICompatClient
from cfai_cli.upstream.workers import NO_RETRY, RawAnswer, UpstreamStream, WorkersAIClient

T = TypeVar("T")
log = logging.getLogger("cfai.router")

# [upstream lane, model] of the target that answered the current request; the proxy sets a fresh list
# per request (tasks a request starts copy the context, so they write into the same list).
SERVED: ContextVar[list[str] | None] = ContextVar("cfai_served", default=None)


@dataclass(slots=True)
class Lane:
    """One key of one upstream; `unavailable` says why it cannot be used (a key not set, offline)."""

    label: str  # "cloudflare", "backup", "backup#2"
    upstream: str
    kind: str  # "cloudflare" | "openai"
    client: WorkersAIClient | OpenAICompatClient | None
    unavailable: str | None = None

    @property
    def workers(self) -> WorkersAIClient:
        assert isinstance(self.client, WorkersAIClient)
        return self.client

    @property
    def openai(self) -> OpenAICompatClient:
        assert isinstance(self.client, OpenAICompatClient)
        return self.client


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Router:
    def __init__(self, config: RoutingConfig, lanes: list[Lane], *, aliases: Mapping[str, str],
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.lanes = lanes
        self.aliases = aliases
        self.clock = clock
        self.cooldowns = Cooldowns()
        self._by_upstream: dict[str, list[Lane]] = {}
        for lane in lanes:
            self._by_upstream.setdefault(lane.upstream, []).append(lane)
        self.cloudflare = [name for name, group in self._by_upstream.items() if group[0].kind == "cloudflare"]

    # ---- what a name means ------------------------------------------------------------------------

    def chain(self, name: str) -> tuple[str | None, list[Target]]:
        """(the route's name or None, its targets); a plain model name runs on every Cloudflare account."""
        route = self.config.route_name(name)
        if route is None:
            model = resolve_model(name, self.aliases)
            return None, [Target(upstream, model) for upstream in self.cloudflare]
        targets: list[Target] = []
        for link in self.config.routes[route]:
            if isinstance(link, str):
                model = resolve_model(link, self.aliases)
                targets += [Target(upstream, model) for upstream in self.cloudflare]
            elif link.upstream in self.cloudflare:  # a Workers AI model: aliases apply
                targets.append(Target(link.upstream, resolve_model(link.model, self.aliases)))
            else:
                targets.append(link)
        return route, targets

    def resolve(self, name: str) -> str:
        """The model a name stands for, as shown in answers: a route's own name, else the Workers AI id."""
        return self.config.resolve(name, self.aliases)

    def _candidates(self, targets: list[Target]) -> tuple[list[tuple[Target, Lane]], list[str]]:
        found: list[tuple[Target, Lane]] = []
        skipped: list[str] = []
        for target in targets:
            for lane in self._by_upstream.get(target.upstream, []):
                if lane.unavailable:
                    skipped.append(f"{lane.label}: {lane.unavailable}")
                else:
                    found.append((target, lane))
        return found, skipped

    # ---- calling along a chain --------------------------------------------------------------------

    async def call(self, name: str, attempt: Callable[[Target, Lane], Awaitable[T]], *,
                   cloudflare_only: bool = False) -> T:
        """`attempt` on the chain of `name` until one answers; the last failure if none does."""
        route: str | None = None
        if cloudflare_only:
            targets = [Target(upstream, name) for upstream in self.cloudflare]
        else:
            route, targets = self.chain(name)
        candidates, skipped = self._candidates(targets)
        if not candidates:
            raise UpstreamError(f"No upstream can serve {name!r} now: {'; '.join(skipped) or 'no targets'}.")
        order = self.cooldowns.order([(lane.label, target.model) for target, lane in candidates], self.clock())
        last: CfaiError | None = None
        for position, index in enumerate(order):
            target, lane = candidates[index]
            more = position < len(order) - 1
            token = NO_RETRY.set(more)  # another target waits: fail over now instead of retrying this one
            try:
                result = await attempt(target, lane)
            except CfaiError as exc:
                kind = failure_kind(exc)
                kinds, cooldown = self.config.policy(target.upstream)
                if kind is None or kind not in kinds:
                    raise
                rests = rests_target(kind, named_by_client=route is None)
                if rests:
                    self.cooldowns.failed(lane.label, target.model, kind, exc, cooldown=cooldown, now=self.clock())
                if more:  # a client's typo is not the upstream's trouble: no warning for it
                    log.log(logging.WARNING if rests else logging.DEBUG, "%s failed on %s (%s): %s; trying the next "
                            "target", target.model, lane.label, kind, exc.message)
                last = exc
                continue
            finally:
                NO_RETRY.reset(token)
            self.cooldowns.succeeded(lane.label, target.model)
            served = SERVED.get()
            if served is not None:
                served[:] = [lane.label, target.model]
            return result
        assert last is not None
        raise last

    # ---- what it looks like ------------------------------------------------------------------------

    def _lane_view(self, lane: Lane, model: str | None = None) -> dict[str, Any]:
        now = self.clock()
        state = self.cooldowns.state(lane.label)
        state.prune(now)
        if model is not None:
            until = state.rest_until(model, now)
            resting = {model: until} if until else {}
        else:
            resting = dict(state.resting)
        view: dict[str, Any] = {"state": "unavailable" if lane.unavailable else
                                ("cooling_down" if resting else "ok")}
        if lane.unavailable:
            view["reason"] = lane.unavailable
        if resting:
            view["cooling_down_until"] = {m if m != "*" else "all models": _iso(t) for m, t in resting.items()}
        view.update(served=state.served, failures=state.failures)
        if state.last_error:
            view["last_error"] = {"kind": state.last_kind, "message": state.last_error,
                                  "at": _iso(state.last_failure_at or now)}
        return view

    def health(self) -> list[dict[str, Any]]:
        """Each upstream and each of its keys: ok, cooling down until when, last error; no secrets."""
        out = []
        for name, group in self._by_upstream.items():
            keys = [{"key": i + 1, **self._lane_view(lane)} for i, lane in enumerate(group)]
            states = {k["state"] for k in keys}
            state = "ok" if "ok" in states else ("cooling_down" if "cooling_down" in states else "unavailable")
            out.append({"name": name, "type": group[0].kind, "state": state, "keys": keys})
        return out

    def describe(self, name: str) -> dict[str, Any]:
        """The chain `name` resolves to, each target with its keys' state (for /v1/route-check)."""
        route, targets = self.chain(name)
        links = []
        for target in targets:
            group = self._by_upstream.get(target.upstream, [])
            links.append({"upstream": target.upstream, "model": target.model,
                          "type": group[0].kind if group else "unknown",
                          "keys": [{"key": i + 1, **self._lane_view(lane, target.model)}
                                   for i, lane in enumerate(group)]})
        return {"object": "route", "model": name, "route": route, "targets": links}

    @property
    def retries(self) -> int:
        return sum(lane.workers.retries for lane in self.lanes
                   if lane.kind == "cloudflare" and lane.client is not None)

    async def aclose(self) -> None:
        for lane in self.lanes:
            if lane.client is not None:
                await lane.client.aclose()


class WorkersPool:
    """`WorkersAIClient`'s calls over every Cloudflare account in order, with failover and cooldown."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self._suggest: Callable[[str], Awaitable[str]] | None = None

    @property
    def suggest(self) -> Callable[[str], Awaitable[str]] | None:
        """Adds "did you mean" to a 404 for an unknown model (set by the service layer)."""
        return self._suggest

    @suggest.setter
    def suggest(self, value: Callable[[str], Awaitable[str]] | None) -> None:
        self._suggest = value
        for lane in self.router.lanes:
            if lane.kind == "cloudflare" and lane.client is not None:
                lane.workers.suggest = value

    @property
    def retries(self) -> int:
        return self.router.retries

    async def run(self, model: str, body: Mapping[str, Any]) -> Any:
        return await self.router.call(model, lambda t, lane: lane.workers.run(t.model, body), cloudflare_only=True)

    async def run_raw(self, model: str, **kwargs: Any) -> RawAnswer:
        return await self.router.call(model, lambda t, lane: lane.workers.run_raw(t.model, **kwargs),
                                      cloudflare_only=True)

    async def stream(self, model: str, body: Mapping[str, Any]) -> UpstreamStream:
        return await self.router.call(model, lambda t, lane: lane.workers.stream(t.model, body), cloudflare_only=True)

    async def models_search(self, params: Mapping[str, str | int]) -> list[dict[str, Any]]:
        return await self.router.call("(model search)", lambda t, lane: lane.workers.models_search(params),
                                      cloudflare_only=True)
