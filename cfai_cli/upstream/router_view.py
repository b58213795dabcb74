"""What the router's lanes look like from outside: `/health` and `/v1/route-check` (Router.health, .describe).

Imports core.cooldowns; the router only for its types. Each key's state (ok, cooling_down, unavailable) comes
from the replicas' shared rests when the router last read them (`Router.refresh_view`), else from this
process's own cooldown table; served/failure counters are always this process's own, and every error text
has the configured secrets masked.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cfai_cli.core.cooldowns import Rest

if TYPE_CHECKING:
    from cfai_cli.upstream.router import Lane, Router


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _resting(router: Router, lane: str, now: float) -> tuple[dict[str, float], Rest | None]:
    """The lane's rests (model or '*' → until) and the newest shared failure: the replicas' when read."""
    if router._shared_view is None:
        state = router.cooldowns.state(lane)
        state.prune(now)
        return dict(state.resting), None
    shared = {m: r for m, r in router._shared_view.get(lane, {}).items() if r.until > now}
    newest = max(shared.values(), key=lambda r: r.at or 0.0, default=None)
    return {m: r.until for m, r in shared.items()}, newest


def lane_view(router: Router, lane: Lane, model: str | None = None, *, detail: bool = True) -> dict[str, Any]:
    now = router.clock()
    state = router.cooldowns.state(lane.label)
    resting, newest = _resting(router, lane.label, now)
    if model is not None:
        until = max(resting.get("*", 0.0), resting.get(model, 0.0))
        resting = {model: until} if until > now else {}
    view: dict[str, Any] = {"state": "unavailable" if lane.unavailable else ("cooling_down" if resting else "ok")}
    if not detail:
        return view
    if lane.unavailable:
        view["reason"] = lane.unavailable
    if resting:
        view["cooling_down_until"] = {m if m != "*" else "all models": iso(t) for m, t in resting.items()}
    view.update(served=state.served, failures=state.failures)  # this process's own counts
    if newest is not None and newest.error and (newest.at or 0.0) > (state.last_failure_at or 0.0):
        view["last_error"] = {"kind": newest.kind, "message": router.scrubber.text(newest.error),
                              "at": iso(newest.at or now)}
    elif state.last_error:
        view["last_error"] = {"kind": state.last_kind, "message": router.scrubber.text(state.last_error),
                              "at": iso(state.last_failure_at or now)}
    return view


def health_view(router: Router, *, detail: bool = False) -> list[dict[str, Any]]:
    """Each upstream's name and state; with `detail` (admins), its type and each key's rests, counters and
    last error."""
    out = []
    for name, group in router._by_upstream.items():
        keys = [{"key": i + 1, **lane_view(router, lane, detail=detail)} for i, lane in enumerate(group)]
        states = {k["state"] for k in keys}
        state = "ok" if "ok" in states else ("cooling_down" if "cooling_down" in states else "unavailable")
        out.append({"name": name, "type": group[0].kind, "state": state, "keys": keys} if detail
                   else {"name": name, "state": state})
    return out


def route_view(router: Router, name: str, *, vision: bool = False, detail: bool = True) -> dict[str, Any]:
    """The chain `name` resolves to (for a request with images when `vision`), each target with its keys'
    state; `detail` (admins) adds each key's rest, counters and last error."""
    route, targets = router.chain(name, vision=vision)
    links = []
    for target in targets:
        group = router._by_upstream.get(target.upstream, [])
        links.append({"upstream": target.upstream, "model": target.model,
                      "type": group[0].kind if group else "unknown",
                      "keys": [{"key": i + 1, **lane_view(router, lane, target.model, detail=detail)}
                               for i, lane in enumerate(group)]})
    return {"object": "route", "model": name, "route": route, "targets": links}
