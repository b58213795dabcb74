"""One request's explicit record: what its caller may do, and what the request really did.

Imports stdlib, core and errors. The proxy makes one per request (the CLI runs with the open default); the
router and the services fill it in as they learn things (the model that actually ran, upstream calls,
the usage Workers AI reported) and the proxy's limits and usage log read it. Policies are judged here,
on the resolved request, never on a second reading of the body.
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from cfai_cli.core.cache import Mode, Status, combine
from cfai_cli.core.cost import Units
from cfai_cli.errors import PermissionDenied

MAX_CONCURRENT_CALLS = 8  # upstream calls one request runs at once (its other calls wait their turn)


class CallSlots:
    """At most `limit` of one request's upstream calls at once (`async with`), as an asyncio.Semaphore(limit) does,
    without one while the request has had a single call in flight at a time (nearly every request): the Semaphore,
    made and entered per request, was ~12.5 k of a plain chat's 0.984 M instructions (bench/stream_cpu.py --plain,
    callgrind, 2026-12-02, round 7). A second call made while one is in makes the Semaphore, counting the one
    inside as holding a slot; from then on every entry and exit goes through it, so waiting, its order and
    cancellation are asyncio's."""

    __slots__ = ("_inside", "_limit", "_semaphore")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._inside = 0  # calls in, before the Semaphore is made
        self._semaphore: asyncio.Semaphore | None = None

    async def __aenter__(self) -> None:
        if self._semaphore is None:
            if not self._inside:
                self._inside = 1
                return
            self._semaphore = asyncio.Semaphore(self._limit - self._inside)
        await self._semaphore.acquire()

    async def __aexit__(self, *exc: object) -> None:
        if self._semaphore is None:
            self._inside = 0
        else:
            self._semaphore.release()


@dataclass(slots=True)
class RequestRecord:
    """What one request has learned so far (key, limits, model used, usage, cache status, timings)."""

    key_id: str | None = None
    model_patterns: tuple[str, ...] = ()  # shell-style; empty = every model
    # Charges `n` more upstream calls to the caller's rate limits (raises RateLimited); None = unlimited.
    charge: Callable[[int], Awaitable[None]] | None = None
    # Holds what `n` more upstream calls of a model are estimated to cost against the key's budget (raises
    # QuotaExceeded when they do not fit; server.auth, store.budgets); None = no budget.
    budget: Callable[[str, int], Awaitable[None]] | None = None
    held_calls: int = 0  # upstream calls whose cost the budget already holds
    hold_id: str | None = None  # the budget hold's id, once it has one (settled at the request's end)
    planned: Units | None = None  # what one call is expected to use, for a model with no known cost yet
    asked: str | None = None  # the model name the request asked for, after defaults (set by the service)
    prepaid: int = 1  # calls already charged when the request was admitted
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_known: bool = False
    upstream: str | None = None  # who answered: lane label ("cloudflare", "backup#2")
    model: str | None = None  # the model that actually ran
    affinity: str | None = None  # the client's own x-session-affinity header (core.affinity), checked by the route
    # Seconds spent waiting on upstreams (attempts up to their answer's headers, retry back-offs, first stream
    # events), added by the clients (an upstream.provider.WaitLog): the proxy's x-cfai-overhead-ms leaves it out.
    upstream_wait: float = 0.0
    slots: CallSlots = field(default_factory=lambda: CallSlots(MAX_CONCURRENT_CALLS))
    cache_mode: Mode | None = None  # what the proxy lets it do with the response cache; None: off (core.cache)
    cache: Status | None = None  # what the cache did: x-cfai-cache, the usage log's `cache`, the metrics
    # Neurons the request's Workers AI calls cost (core.cost): as Workers AI reported them (the clients add every
    # `cf-ai-neurons` / `usage.neurons`), else estimated at the end from published prices (service.cost.settle).
    neurons: float | None = None
    neurons_estimated: bool = False
    account: str | None = None  # the Cloudflare upstream (account) that served: its free allocation was spent
    # What an image or audio call used, for estimating it where Workers AI reports no neurons.
    tiles: int = 0
    input_tiles: int = 0
    steps: int = 0
    audio_seconds: float = 0.0
    characters: int = 0  # of text sent to be spoken

    def note_cache(self, status: Status) -> None:
        self.cache = combine(self.cache, status)

    def allows(self, *names: str) -> bool:
        """True if the name asked for, or any of `names` (what the router was given, the model that would
        run), matches the key's patterns: a key granted an alias or a route may use what it stands for."""
        if not self.model_patterns:
            return True
        candidates = (self.asked, *names) if self.asked else names
        return any(fnmatch.fnmatchcase(name, pattern) for name in candidates for pattern in self.model_patterns)

    def check_model(self, name: str, *running: str) -> None:
        """A 403 unless the key may use `name` or one of the models it runs as."""
        if not self.allows(name, *running):
            asked = self.asked or name
            shown = f" (it runs as {', '.join(running)})" if running and running != (asked,) else ""
            raise PermissionDenied(f"This key may not use the model {asked!r}{shown}.", param="model",
                                   code="model_not_allowed")

    async def reserve(self, calls: int) -> None:
        """Charge a fan-out's `calls` upstream calls at once, before any is made: a request over its limits is
        refused whole, not after spending part of it. Calls later counted by `spend` use the reservation."""
        extra = calls - self.prepaid
        if extra > 0:
            self.prepaid = calls
            if self.charge is not None:
                await self.charge(extra)

    async def hold(self, model: str, calls: int) -> None:
        """Hold the budget for the request's calls up to `calls` in all (before they are made; see `budget`)."""
        extra = calls - self.held_calls
        if extra > 0 and self.budget is not None:
            await self.budget(model, extra)
            self.held_calls = calls

    async def spend(self, calls: int) -> None:
        """Count `calls` upstream calls, charging what the admission did not already pay for."""
        self.calls += calls
        extra = self.calls - self.prepaid
        if extra > 0:
            self.prepaid = self.calls
            if self.charge is not None:
                await self.charge(extra)

    def add_usage(self, prompt_tokens: int, completion_tokens: int) -> None:
        """Tokens Workers AI (or the provider) reported, or cfai estimated, for one upstream answer."""
        self.prompt_tokens += max(0, prompt_tokens)
        self.completion_tokens += max(0, completion_tokens)
        self.usage_known = True

    def add_neurons(self, neurons: float) -> None:
        """Neurons Workers AI reported for one answer (an upstream.provider.WaitLog's report)."""
        self.neurons = (self.neurons or 0.0) + neurons

    def served(self, upstream: str, model: str) -> None:
        self.upstream, self.model = upstream, model
        if model.startswith("@"):  # a Workers AI id: a Cloudflare account served (its rotation keys are one account)
            self.account = upstream.split("#", 1)[0]
