"""The router: which upstream serves a model name, failover along its chain, and who answered.

Imports core.routing, core.catalog, core.cooldowns, errors, upstream.provider and upstream.workers (its retry
count). A *lane* is one key of one upstream (an upstream with three tokens has three lanes), holding its
`Provider`. `Router.call` tries the (target, lane) candidates of a chain in order, skipping resting ones, and
hands each attempt the lane's provider bound to that attempt: allowed to retry only when no other candidate
waits behind it, and counting its waiting in the request's record. A failure of a kind the
target's policy names rests that lane (for that model, or for the whole lane when it is a quota or a
bad key) and moves on; any other failure (the client's own 4xx) is raised at once. With a `Caller` (the
request's record), only targets its key may use are tried, the calls are charged to it, and it is told
who answered, for the proxy's headers and usage log. Every failure's text has the configured secrets
masked (an upstream may echo its token or account id) before it is kept, logged or raised; only models the
router knows (configured, in the catalogue, or answered lately) are ever rested by name. A Cloudflare account
with a daily cap (`daily_neurons`, `free_tier_only`) is skipped before any call once its neurons today (the
router's `Meter`) have reached it; when every candidate is capped, a 429 insufficient_quota says which caps.
With `SharedRests` (`[coordination] url`: server wiring gives store.redis_cooldowns'), every rest is published to
the gateway's other replicas, and a chain with more than one candidate is ordered by the replicas' rests, read
once per request; while they cannot be read, by this process's own table (cooldowns only steer failover).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from cfai_cli.core.catalog import resolve_model
from cfai_cli.core.cooldowns import Cooldowns, Rest, failure_kind, rests_target, shared_until
from cfai_cli.core.cost import day_start
from cfai_cli.core.redact import Scrubber
from cfai_cli.core.routing import RoutingConfig, Target
from cfai_cli.errors import CfaiError, InvalidRequest, QuotaExceeded, UpstreamError
from cfai_cli.upstream.provider import Provider, UpstreamType, WaitLog
from cfai_cli.upstream.workers import WorkersAIClient

T = TypeVar("T")
log = logging.getLogger("cfai.router")

ANSWERED_MODELS = 1024  # models remembered as real because they answered (oldest forgotten first)
MAX_CHAINS = 1024  # chains kept by name (Router.chain)


class Caller(Protocol):
    """What the router needs of the request it works for (service.record.RequestRecord is one)."""

    upstream_wait: float  # its time spent waiting on upstreams (a WaitLog)
    calls: int  # upstream calls counted so far

    @property
    def slots(self) -> contextlib.AbstractAsyncContextManager[None]: ...  # bounds the calls it runs at once
    def allows(self, *names: str) -> bool: ...
    def check_model(self, name: str, *running: str) -> None: ...
    async def hold(self, model: str, calls: int) -> None: ...  # the budget, for its calls up to `calls` in all
    async def spend(self, calls: int) -> None: ...
    def served(self, upstream: str, model: str) -> None: ...
    def add_neurons(self, neurons: float) -> None: ...  # what Workers AI reported (a WaitLog)


class Meter(Protocol):
    """Each Cloudflare account's neurons since 00:00 UTC, as far as this process knows (server.meter's is the
    usage log of every worker plus this process's rows not yet written)."""

    async def today(self, now: float) -> Mapping[str, float]: ...


class SharedRests(Protocol):
    """Rests shared by a gateway's replicas. Never raises: a store out of reach reads as None (the router then
    orders by its own table) and loses what it is told (a rest is an optimisation of failover)."""

    async def read(self, pairs: Collection[tuple[str, str]]) -> dict[tuple[str, str], Rest] | None: ...
    async def rest(self, lane: str, scope: str, rest: Rest, *, now: float) -> None: ...
    async def clear(self, lane: str, model: str) -> None: ...
    async def lanes(self, names: Collection[str], *, now: float) -> dict[str, dict[str, Rest]] | None: ...


def _running(target: Target, lane: Lane) -> str:
    """The model a candidate runs, as a key's patterns see it: a Workers AI id, or `upstream:model`."""
    return target.model if lane.kind == "cloudflare" else f"{target.upstream}:{target.model}"


@dataclass(slots=True)
class Lane:
    """One key of one upstream: its provider, or (None and) why it cannot be used (a key not set, offline)."""

    label: str  # "cloudflare", "backup", "backup#2"
    upstream: str
    kind: UpstreamType  # which upstreams are Cloudflare accounts, how their models are named, /health's type
    provider: Provider | None
    unavailable: str | None = None


Attempt = Callable[[Target, Provider], Awaitable[T]]  # one try of a chain: the target, the provider bound to it


class Router:
    def __init__(self, config: RoutingConfig, lanes: list[Lane], *, aliases: Mapping[str, str],
                 vision_aliases: Mapping[str, str] | None = None, clock: Callable[[], float] = time.time,
                 scrubber: Scrubber | None = None,
                 catalogue: Callable[[], Collection[str]] | None = None, meter: Meter | None = None,
                 shared: SharedRests | None = None) -> None:
        self.config = config
        self.meter = meter
        self.shared = shared
        self._shared_view: dict[str, dict[str, Rest]] | None = None  # the replicas' rests by lane, for the views
        # Cloudflare accounts with a daily cap on their neurons (docs/cost.md).
        self.caps = {u.name: u.daily_neurons for u in config.upstreams
                     if u.kind == "cloudflare" and u.daily_neurons is not None}
        self.lanes = lanes
        self.aliases = aliases
        self.vision_aliases: Mapping[str, str] = vision_aliases or {}
        self.clock = clock
        self.scrubber = scrubber if scrubber is not None else Scrubber()
        self.cooldowns = Cooldowns()
        # The model ids of the catalogue when the service has fetched it, for `known`.
        self.catalogue = catalogue
        self._configured = self._configured_models()
        self._chains: dict[tuple[str, bool], tuple[str | None, tuple[Target, ...]]] = {}
        self._answered: dict[str, None] = {}
        self._by_upstream: dict[str, list[Lane]] = {}
        for lane in lanes:
            self._by_upstream.setdefault(lane.upstream, []).append(lane)
        self.cloudflare = [name for name, group in self._by_upstream.items() if group[0].kind == "cloudflare"]

    # ---- what a name means ------------------------------------------------------------------------

    def kinds(self, name: str, *, vision: bool = False) -> set[UpstreamType]:
        """The upstream types the targets of `name`'s chain are on."""
        return {group[0].kind for target in self.chain(name, vision=vision)[1]
                if (group := self._by_upstream.get(target.upstream))}

    def chain(self, name: str, *, vision: bool = False) -> tuple[str | None, list[Target]]:
        """(the route's name or None, its targets); a plain model name runs on every Cloudflare account.

        `vision`: the request carries images, so aliases (plain, or inside a route) whose model does not
        take images become their vision alias; explicit ids and other providers' models are kept.
        Made once per name: the routes, aliases and lanes it is made from never change (a name that fails,
        an unknown model, is not kept and fails again the same way).
        """
        made = self._chains.get((name, vision))
        if made is None:
            if len(self._chains) >= MAX_CHAINS:  # names come from clients: keep the cache bounded
                self._chains.clear()
            made = self._chains[(name, vision)] = self._chain(name, vision)
        return made[0], list(made[1])

    def _chain(self, name: str, vision: bool) -> tuple[str | None, tuple[Target, ...]]:
        def workers_model(link: str) -> str:
            return resolve_model(link, self.aliases, vision=vision, vision_aliases=self.vision_aliases)

        route = self.config.route_name(name)
        if route is None:
            model = workers_model(name)
            return None, tuple(Target(upstream, model) for upstream in self.cloudflare)
        targets: list[Target] = []
        for link in self.config.routes[route]:
            if isinstance(link, str):
                model = workers_model(link)
                targets += [Target(upstream, model) for upstream in self.cloudflare]
            elif link.upstream in self.cloudflare:  # a Workers AI model: aliases apply
                targets.append(Target(link.upstream, workers_model(link.model)))
            else:
                targets.append(link)
        return route, tuple(targets)

    def _configured_models(self) -> frozenset[str]:
        names = set(self.aliases.values()) | set(self.vision_aliases.values())
        for chain in self.config.routes.values():
            for link in chain:
                names.add(link if isinstance(link, str) else link.model)
        resolved = set()
        for name in names:
            with contextlib.suppress(InvalidRequest):  # not for a pass-through provider's own model names
                resolved.add(resolve_model(name, self.aliases))
        return frozenset(names | resolved)

    def known(self, model: str) -> bool:
        """A model a failure may rest by name: configured, answered lately, or in the catalogue."""
        if model in self._configured or model in self._answered:
            return True
        return self.catalogue is not None and model in self.catalogue()

    def _answered_by(self, model: str) -> None:
        if model not in self._answered and model not in self._configured:
            if len(self._answered) >= ANSWERED_MODELS:
                del self._answered[next(iter(self._answered))]
            self._answered[model] = None

    def resolve(self, name: str, *, vision: bool = False) -> str:
        """The model a name stands for, as shown in answers: a route's own name, else the Workers AI id."""
        return self.config.resolve(name, self.aliases, vision=vision, vision_aliases=self.vision_aliases)

    def _candidates(self, targets: list[Target]) -> tuple[list[tuple[Target, Lane, Provider]], list[str]]:
        found: list[tuple[Target, Lane, Provider]] = []
        skipped: list[str] = []
        for target in targets:
            for lane in self._by_upstream.get(target.upstream, []):
                if lane.provider is None or lane.unavailable:
                    skipped.append(f"{lane.label}: {lane.unavailable or 'unavailable'}")
                else:
                    found.append((target, lane, lane.provider))
        return found, skipped

    def authorize(self, name: str, caller: Caller, *, vision: bool = False, cloudflare_only: bool = False
                  ) -> list[str]:
        """The chain `name` runs on (`upstream:model` per target), once the caller's model policy allows one of
        its targets (a 403 otherwise, as `call` would give): what an answer served without calling (the
        response cache) is judged and keyed by. Unavailable lanes count: policy is about what would run."""
        targets = ([Target(upstream, name) for upstream in self.cloudflare] if cloudflare_only
                   else self.chain(name, vision=vision)[1])
        running = [_running(t, lane) for t in targets for lane in self._by_upstream.get(t.upstream, [])[:1]]
        if not any(caller.allows(name, r) for r in running):  # no lanes at all: judged on the name alone
            caller.check_model(name, *dict.fromkeys(running))
        return [str(t) for t in targets]

    # ---- calling along a chain --------------------------------------------------------------------

    async def call(self, name: str, attempt: Attempt[T], *, cloudflare_only: bool = False, vision: bool = False,
                   caller: Caller | None = None, calls: int = 1, waits: WaitLog | None = None) -> T:
        """`attempt` on the chain of `name` until one answers; the last failure if none does.

        `vision`: the request carries images (see `chain`). With a `caller`, only targets its policy allows
        are tried (a 403 if none is), the `calls` upstream calls one attempt makes are charged to it, and it
        learns who answered. The providers count their waiting in `waits` (default: the caller).
        """
        route: str | None = None
        if cloudflare_only:
            targets = [Target(upstream, name) for upstream in self.cloudflare]
        else:
            route, targets = self.chain(name, vision=vision)
        candidates, skipped = self._candidates(targets)
        if caller is not None:
            candidates = self._allowed(name, candidates, caller)
        if self.caps and self.meter is not None and candidates:
            candidates = await self._uncapped(name, candidates, skipped)
        if caller is not None:
            if candidates:  # the budget first: a request it refuses must not use up a rate window
                await caller.hold(_running(candidates[0][0], candidates[0][1]), caller.calls + calls)
            await caller.spend(calls)
        if not candidates:
            raise UpstreamError(f"No upstream can serve {name!r} now: {'; '.join(skipped) or 'no targets'}.")
        waits = waits if waits is not None else caller
        if caller is None:
            return await self._walk(candidates, attempt, None, waits, named_by_client=route is None)
        async with caller.slots:
            return await self._walk(candidates, attempt, caller, waits, named_by_client=route is None)

    @staticmethod
    def _allowed(name: str, candidates: list[tuple[Target, Lane, Provider]],
                 caller: Caller) -> list[tuple[Target, Lane, Provider]]:
        """The candidates the caller's model policy allows; a 403 naming what would have run if none is."""
        allowed = [c for c in candidates if caller.allows(name, _running(c[0], c[1]))]
        if candidates and not allowed:
            caller.check_model(name, *dict.fromkeys(_running(t, lane) for t, lane, _ in candidates))
        return allowed

    async def _uncapped(self, name: str, candidates: list[tuple[Target, Lane, Provider]], skipped: list[str]
                        ) -> list[tuple[Target, Lane, Provider]]:
        """The candidates whose account has not reached its daily cap (the capped ones noted in `skipped`);
        a 429 insufficient_quota naming the caps and their reset when every one has."""
        assert self.meter is not None
        capped = {lane.upstream for _, lane, _ in candidates if lane.upstream in self.caps}
        if not capped:
            return candidates
        now = self.clock()
        spent = await self.meter.today(now)
        full = {u for u in capped if spent.get(u, 0.0) >= self.caps[u]}
        if not full:
            return candidates
        reset = day_start(now) + 86_400
        notes = [f"{u} has used its daily cap of {self.caps[u]:,g} neurons ({spent.get(u, 0.0):,.2f} today)"
                 for u in sorted(full)]
        skipped.extend(notes)
        left = [c for c in candidates if c[1].upstream not in full]
        if not left:
            from cfai_cli.upstream.router_view import iso

            raise QuotaExceeded(
                f"No upstream can serve {name!r} today: {'; '.join(notes)}. The caps reset at "
                f"{iso(reset)} (00:00 UTC, in {int((reset - now) // 3600)} h {int((reset - now) % 3600 // 60)} m).",
                retry_after=reset - now)
        return left

    async def _walk(self, candidates: list[tuple[Target, Lane, Provider]], attempt: Attempt[T],
                    caller: Caller | None, waits: WaitLog | None, *, named_by_client: bool) -> T:
        pairs = [(lane.label, target.model) for target, lane, _ in candidates]
        # One candidate is tried whatever rests: only a choice is worth a round trip to the replicas' rests.
        remote = await self.shared.read(pairs) if self.shared is not None and len(pairs) > 1 else None
        order = self.cooldowns.order(pairs, self.clock(), remote)
        last: CfaiError | None = None
        for position, index in enumerate(order):
            target, lane, provider = candidates[index]
            more = position < len(order) - 1
            try:
                # Another target waits: fail over now instead of retrying this one.
                result = await attempt(target, provider.for_attempt(retry=not more, waits=waits))
            except CfaiError as exc:
                if self.scrubber:
                    exc.message = self.scrubber.text(exc.message)
                kind = failure_kind(exc)
                kinds, cooldown = self.config.policy(target.upstream)
                if kind is None or kind not in kinds:
                    raise
                # A model the client named directly that is missing rests nothing (rests_target); one in a
                # configured route that goes missing rests as usual. Either way only models the router knows.
                rests = rests_target(kind, named_by_client=named_by_client)
                if rests:
                    now = self.clock()
                    rested = self.cooldowns.failed(lane.label, target.model, kind, exc, cooldown=cooldown, now=now,
                                                   known=self.known(target.model))
                    if rested is not None and self.shared is not None:
                        await self.shared.rest(lane.label, rested[0], Rest(rested[1], kind, exc.message[:300], now),
                                               now=now)
                if more:  # a client's typo is not the upstream's trouble: no warning for it
                    log.log(logging.WARNING if rests else logging.DEBUG, "%s failed on %s (%s): %s; trying the next "
                            "target", target.model, lane.label, kind, exc.message)
                last = exc
                continue
            if self.shared is not None and self._was_resting(lane.label, target.model, remote):
                await self.shared.clear(lane.label, target.model)
            self.cooldowns.succeeded(lane.label, target.model)
            self._answered_by(target.model)
            if caller is not None:
                caller.served(lane.label, target.model)
            return result
        assert last is not None
        raise last

    def _was_resting(self, lane: str, model: str, remote: dict[tuple[str, str], Rest] | None) -> bool:
        """Whether an answer ends a rest the replicas may share (so it is cleared for them too)."""
        resting = self.cooldowns.state(lane).resting
        return (remote is not None and shared_until(remote, lane, model, 0.0) is not None) or bool(
            resting.keys() & {model, "*"})

    # ---- what it looks like ------------------------------------------------------------------------

    async def refresh_view(self) -> None:
        """The replicas' rests of every lane for `health` and `describe` (else, or unreadable: this table's)."""
        if self.shared is not None:
            self._shared_view = await self.shared.lanes([lane.label for lane in self.lanes], now=self.clock())

    def health(self, *, detail: bool = False) -> list[dict[str, Any]]:
        """Each upstream's name and state (ok, cooling_down, unavailable); with `detail` (admins), its type
        and each key's rests, counters and last error (secrets masked): upstream.router_view."""
        from cfai_cli.upstream.router_view import health_view  # /health only: not a one-shot command's import

        return health_view(self, detail=detail)

    def describe(self, name: str, *, vision: bool = False, detail: bool = True) -> dict[str, Any]:
        """The chain `name` resolves to, each target with its keys' state (/v1/route-check): router_view."""
        from cfai_cli.upstream.router_view import route_view

        return route_view(self, name, vision=vision, detail=detail)

    @property
    def retries(self) -> int:
        """Transient failures the Workers AI clients retried (a metric; other providers never retry)."""
        return sum(lane.provider.retries for lane in self.lanes if isinstance(lane.provider, WorkersAIClient))

    async def aclose(self) -> None:
        for lane in self.lanes:
            if lane.provider is not None:
                await lane.provider.aclose()

