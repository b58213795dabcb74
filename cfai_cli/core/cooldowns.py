"""Failover and cooldown as data: which kind an upstream failure is, whether it rests its target, and the
table of resting (lane, model) pairs that orders a chain's candidates for one request.

Pure: standard library and cfai_cli.errors; the clock is an argument. Model names come from clients, so the
table is bounded: a missing model the client named rests nothing, the caller rests only models it knows,
and each lane keeps at most `MAX_RESTING` entries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cfai_cli.errors import (
    CAPACITY_UPSTREAM_CODES,
    CfaiError,
    ModelNotFound,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    UpstreamAuthError,
    UpstreamError,
    UpstreamTimeout,
)

_LANE_WIDE = frozenset({"quota", "auth"})


def failure_kind(error: BaseException) -> str | None:
    """Which failover kind an upstream failure is; None for the client's own mistakes (never failed over)."""
    if isinstance(error, QuotaExceeded):
        return "quota"
    if isinstance(error, RateLimited):
        return "capacity" if str(error.upstream_code) in CAPACITY_UPSTREAM_CODES else "rate_limit"
    if isinstance(error, UpstreamTimeout):
        return "timeout"
    if isinstance(error, UpstreamAuthError):
        return "auth"
    if isinstance(error, UpstreamError):  # 5xx, HTML pages, malformed answers, broken connections and streams
        return "server"
    if isinstance(error, ModelNotFound):
        return "not_found"
    if isinstance(error, PermissionDenied):
        return "forbidden"
    return None  # the client's own mistakes (400, 413) and anything else: never failed over


# Failures the client's own request causes. They still fail over (another account may serve the model),
# but they rest nothing: one client naming a model that does not exist must not cool a target down for
# everyone, nor fill the cooldown table with names. (A client cannot choose the upstream deadline: there is no
# per-request timeout, so timeouts are the upstream's.)
_CLIENT_CAUSED = frozenset({"not_found"})


def rests_target(kind: str, *, named_by_client: bool) -> bool:
    """Whether a failure of `kind` rests its target: not when the model a client named directly is missing
    (a model in a configured route that goes missing is the upstream's problem, and rests as usual)."""
    return not (named_by_client and kind in _CLIENT_CAUSED)


def seconds_to_utc_midnight(now: float) -> float:
    """Workers AI's daily allocation resets at 00:00 UTC."""
    return 86400.0 - (now % 86400.0)


def rest_for(kind: str, error: CfaiError, cooldown: float, now: float) -> float:
    """How long a failed target rests: Retry-After when the upstream said, until midnight UTC for a
    Workers AI daily quota, else the configured cooldown."""
    if error.retry_after is not None:
        return max(error.retry_after, 0.0)
    if kind == "quota" and str(error.upstream_code) in ("4006", "3036"):
        return seconds_to_utc_midnight(now)
    return cooldown


MAX_RESTING = 256  # resting models per lane: a backstop, whatever names clients send


@dataclass(frozen=True, slots=True)
class Rest:
    """One rest as replicas share it (`[coordination] url`): until when, and the failure that caused it."""

    until: float
    kind: str | None = None
    error: str | None = None
    at: float | None = None


def shared_until(rests: Mapping[tuple[str, str], Rest], lane: str, model: str, now: float) -> float | None:
    """When (lane, model) rests until in a table of shared rests keyed by (lane, model or '*'), if it does."""
    until = max(rest.until if (rest := rests.get((lane, scope))) else 0.0 for scope in ("*", model))
    return until if until > now else None


@dataclass(slots=True)
class LaneState:
    """What one lane (a key of an upstream) has shown lately; `resting` maps a model ('*': all) to a time."""

    served: int = 0
    failures: int = 0
    last_error: str | None = None
    last_kind: str | None = None
    last_failure_at: float | None = None
    resting: dict[str, float] = field(default_factory=dict)

    def rest_until(self, model: str, now: float) -> float | None:
        until = max(self.resting.get("*", 0.0), self.resting.get(model, 0.0))
        return until if until > now else None

    def prune(self, now: float) -> None:
        for model in [m for m, until in self.resting.items() if until <= now]:
            del self.resting[model]


class Cooldowns:
    """The state of every lane, keyed by its label ("cloudflare", "backup#2")."""

    def __init__(self) -> None:
        self.lanes: dict[str, LaneState] = {}

    def state(self, lane: str) -> LaneState:
        found = self.lanes.get(lane)
        if found is None:
            found = self.lanes[lane] = LaneState()
        return found

    def succeeded(self, lane: str, model: str) -> None:
        state = self.state(lane)
        state.served += 1
        state.resting.pop(model, None)
        state.resting.pop("*", None)  # it answered: whatever rested the whole lane is over

    def failed(self, lane: str, model: str, kind: str, error: CfaiError, *, cooldown: float, now: float,
               known: bool = True) -> tuple[str, float] | None:
        """Note a failure; the lane (quota, bad key) or the model rests, the model only if it is `known`.
        Returns what rests (the model or '*') and until when, for the other replicas; None if nothing does.

        Only known models rest by name (configured, in the catalogue, answered lately): a made-up name must
        not grow this table. The router does not even note a missing model the client named itself
        (`rests_target`); one a configured route names that goes missing rests like any failure.
        """
        state = self.state(lane)
        state.failures += 1
        state.last_error = error.message[:300]
        state.last_kind = kind
        state.last_failure_at = now
        rest = rest_for(kind, error, cooldown, now)
        scope = "*" if kind in _LANE_WIDE else model
        if rest <= 0 or (scope != "*" and not known):
            return None
        if scope not in state.resting and len(state.resting) >= MAX_RESTING:
            state.prune(now)
            if len(state.resting) >= MAX_RESTING:  # still full: the rest that ends soonest gives way
                del state.resting[min(state.resting, key=state.resting.__getitem__)]
        state.resting[scope] = until = max(state.resting.get(scope, 0.0), now + rest)
        return scope, until

    def order(self, candidates: Sequence[tuple[str, str]], now: float,
              shared: Mapping[tuple[str, str], Rest] | None = None) -> list[int]:
        """Indexes of the (lane, model) candidates to try, in order: those not resting, in chain order; if
        all rest, the one whose rest ends first (one try keeps answering without hammering them all).
        `shared`: the replicas' rests (read from Redis for this request), used instead of this table."""
        def until(i: int) -> float | None:
            lane, model = candidates[i]
            if shared is not None:
                return shared_until(shared, lane, model, now)
            return self.state(lane).rest_until(model, now)

        ready = [i for i in range(len(candidates)) if until(i) is None]
        if ready or not candidates:
            return ready
        return [min(range(len(candidates)), key=lambda i: until(i) or 0.0)]
