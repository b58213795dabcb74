"""The response cache's rules as data and pure functions: its config, what a request asks of it, its key.

Pure: the standard library and errors. The `[cache]` table of config.toml becomes a `CacheConfig`
(core.config_file); the proxy turns the route, the key's flag and the `x-cfai-cache` header into a `Mode`
(`request_mode`), the service decides with the request's temperature whether to look up and store
(`plan`), and `cache_key` hashes the canonical request, the model chain it resolved to and the tenant, so
one tenant never reads another's answers and an alias pointed elsewhere never serves the old model's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from cfai_cli.errors import InvalidRequest

HEADER = "x-cfai-cache"
CACHE_ROUTES = ("chat/completions", "completions", "responses", "messages", "embeddings")
KEY_VERSION = 1  # bumped when what goes into a key changes: older entries then simply miss

# Mode: what the request may do with the cache. `use` (asked for: looked up and stored whatever the temperature),
# `auto` (the key or the config opted in: cached when the request is deterministic), `refresh` (not looked
# up, stored), `skip` (neither).
Mode = Literal["use", "auto", "refresh", "skip"]
# Status: what it did, shown in `x-cfai-cache` and kept in the usage log.
Status = Literal["hit", "miss", "refresh", "bypass"]
_HEADER_VALUES: tuple[Mode, ...] = ("use", "skip", "refresh")

# Fields that never change the answer: how it is delivered (`stream`, `stream_options`: a hit replays as a
# stream, with a usage chunk when asked) or what is done with it afterwards. `user` is kept: an application
# that names its end users keeps their answers apart.
IGNORED_FIELDS = frozenset({"stream", "stream_options", "store", "metadata", "service_tier", "prompt_cache_key"})


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """The `[cache]` table: off unless `enabled`; then used by keys made with `--cache`, by every request
    when `by_default`, and by any request that sends `x-cfai-cache: use` (on the listed routes)."""

    enabled: bool = False
    ttl: float = 3600.0  # seconds an answer is served after it was stored
    max_entries: int = 10_000
    max_bytes: int = 256 * 1024 * 1024  # all stored answers together; the oldest go first
    max_entry_bytes: int = 2 * 1024 * 1024  # a bigger answer is served but not stored
    routes: frozenset[str] = field(default_factory=lambda: frozenset(CACHE_ROUTES))
    by_default: bool = False
    temperature_zero_only: bool = True  # `auto` caches only `temperature: 0` (OpenAI's default is 1)


def request_mode(config: CacheConfig, *, route: str, header: str | None, key_opted_in: bool) -> Mode | None:
    """What this request may do with the cache; None when the cache is off or does not serve `route`.

    The header wins (a client may always skip, refresh or ask for its own tenant's cache); without it the
    key's `--cache` flag or `by_default` make it `auto`, else `skip`. A header value cfai does not know is a
    400 naming the header, not a silent skip.
    """
    if not config.enabled or route not in config.routes:
        return None
    if header is not None:
        value = header.strip().lower()
        for mode in _HEADER_VALUES:
            if value == mode:
                return mode
        raise InvalidRequest(f"Invalid value for the {HEADER} header: {header[:40]!r}; expected use, skip or "
                             "refresh.", param=HEADER, code="invalid_header")
    return "auto" if key_opted_in or config.by_default else "skip"


@dataclass(frozen=True, slots=True)
class Plan:
    """What the service does for one request: look up a stored answer, store the one it gets."""

    lookup: bool
    store: bool

    @property
    def status(self) -> Status:
        """The status when there is no hit: `miss` after a lookup, `refresh` when only storing, else `bypass`."""
        return "miss" if self.lookup else ("refresh" if self.store else "bypass")


def plan(mode: Mode, config: CacheConfig, *, deterministic: bool) -> Plan:
    """`use` and `refresh` are explicit; `auto` caches a random answer only if `temperature_zero_only` is off."""
    if mode == "skip" or (mode == "auto" and config.temperature_zero_only and not deterministic):
        return Plan(lookup=False, store=False)
    return Plan(lookup=mode != "refresh", store=True)


def deterministic_temperature(temperature: float | None) -> bool:
    """Only an explicit 0 is deterministic: unset means OpenAI's default, 1 (Workers AI's own defaults are
    above 0 as well)."""
    return temperature == 0


def canonical(request: Mapping[str, Any]) -> dict[str, Any]:
    """The request's fields that change the answer: nulls dropped (null and unset mean the same)."""
    return {k: v for k, v in request.items() if k not in IGNORED_FIELDS and v is not None}


def cache_key(kind: str, *, tenant: str, chain: Sequence[str], request: Mapping[str, Any]) -> str:
    """SHA-256 of (version, kind, tenant, the resolved chain, the canonical request), key order fixed."""
    payload = [KEY_VERSION, kind, tenant, list(chain), canonical(request)]
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


_RANK: dict[Status, int] = {"hit": 0, "refresh": 1, "miss": 2, "bypass": 3}


def combine(old: Status | None, new: Status) -> Status:
    """One status for a request of several lookups (a completion of several prompts): a hit only if all hit."""
    return new if old is None or _RANK[new] > _RANK[old] else old
