"""What the model catalogue's service (service.models) keeps in a context's cache, read without fetching: the full
catalogue's prices and ids.

Imports core only. Its own module so that service.cost, which the proxy's middleware imports before `cfai serve`
answers its first /health, does not load the catalogue's service with it (~16 M instructions, 1 % of that
start-up, callgrind, issue 25, 2026-12-02).
"""

from __future__ import annotations

from typing import Any

from cfai_cli.core.cost import Prices

FULL = "models::"  # the cache entry of the full catalogue: (fetched at, [ModelInfo, ...]) (service.models)


def cached_prices(cache: dict[str, Any], model_id: str) -> Prices | None:
    """`model_id`'s published prices if the full catalogue was fetched into `cache` (never fetches) and has any."""
    cached = cache.get(FULL)
    if cached is None:
        return None
    found = next((m.prices for m in cached[1] if m.id == model_id), None)
    return found if found is not None and found.known else None


def cached_ids(cache: dict[str, Any]) -> frozenset[str]:
    """The ids of the full catalogue if it was fetched into a context's `cache` (never fetches): for the
    router's "known model" test."""
    cached = cache.get(FULL)
    if cached is None:
        return frozenset()
    ids = cache.get("models::ids")
    if ids is None or ids[0] is not cached:
        ids = cache["models::ids"] = (cached, frozenset(m.id for m in cached[1]))
    found: frozenset[str] = ids[1]
    return found
