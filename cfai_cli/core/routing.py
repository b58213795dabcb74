"""Routing as data: upstreams, routes (a model name -> an ordered chain of targets), failover and cooldown.

Pure: standard library and core.catalog; the clock is an argument. core.config_file reads the `[routing]`,
`[upstreams.*]` and `[routes]` tables of config.toml into these values. What a failure is and how long its
target rests is core.cooldowns.

    [routing]
    cooldown_seconds = 30                      # how long a failing target rests (Retry-After wins)
    failover_on = ["rate_limit", "quota", "capacity", "server", "timeout", "auth", "not_found", "forbidden"]

    [upstreams.backup]                         # another Cloudflare account
    type = "cloudflare"
    account_id = "0123456789abcdef0123456789abcdef"
    api_token_env = ["CF_BACKUP_TOKEN", "CF_BACKUP_TOKEN_2"]   # or api_token = "..." (a string or a list)

    [upstreams.groq]                           # any OpenAI-compatible provider, as a pass-through
    type = "openai"
    base_url = "https://api.groq.com/openai/v1"
    api_key_env = "GROQ_API_KEY"               # or api_key; neither for a local server (Ollama, vLLM)
    extra_fields = ["provider"]                # request fields passed on besides OpenAI's own (default none)

    [upstreams.anthropic]                      # the Anthropic Messages API, chat requests translated
    type = "anthropic"
    api_key_env = "ANTHROPIC_API_KEY"          # or api_key; base_url and anthropic_version have defaults

    [upstreams.gemini]                         # the openai type preset for Gemini's OpenAI-compatible API
    type = "gemini"                            # base_url and api_key_env ("GEMINI_API_KEY") have defaults

    [routes]
    fast = ["@cf/meta/llama-3.1-8b-instruct-fast", "groq:llama-3.1-8b-instant"]
    smart = ["@cf/meta/llama-3.3-70b-instruct-fp8-fast", "anthropic:claude-sonnet-4-5"]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from cfai_cli.core.catalog import resolve_model

DEFAULT_UPSTREAM = "cloudflare"  # the account of CLOUDFLARE_ACCOUNT_ID / CLOUDFLARE_API_TOKEN
FAILURE_KINDS = ("rate_limit", "quota", "capacity", "server", "timeout", "auth", "not_found", "forbidden")


@dataclass(frozen=True, slots=True)
class Credential:
    """One key of an upstream: its value (if known), or the environment variable that holds it."""

    value: str | None = field(default=None, repr=False)
    env: str | None = None

    def describe(self) -> str:
        return f"${self.env}" if self.env else "a key in config.toml"


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """One configured upstream ([upstreams.NAME]): its kind, keys, account and options."""

    name: str
    kind: str  # "cloudflare", "openai" (gemini too: a preset of it) or "anthropic"
    credentials: tuple[Credential, ...] = ()
    account_id: str | None = None
    base_url: str | None = None  # openai: the API root (…/v1); cloudflare: the API base (…/client/v4), if not default
    timeout: float | None = None  # one attempt on this upstream; None = the global timeout
    cooldown: float | None = None  # None = the [routing] default
    failover_on: frozenset[str] | None = None  # None = the [routing] default
    # openai, anthropic: request fields passed on besides the OpenAI schema's (anthropic: into the Messages body)
    extra_fields: frozenset[str] = frozenset()
    anthropic_version: str | None = None  # anthropic: the anthropic-version header
    daily_neurons: float | None = None  # cloudflare: skip the account once it spent this many today (UTC)


@dataclass(frozen=True, slots=True)
class Target:
    """One link of a chain: a model on an upstream."""

    upstream: str
    model: str

    def __str__(self) -> str:
        return f"{self.upstream}:{self.model}"


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    """The upstreams besides the default account, the routes of model names, and the failover policy."""

    upstreams: tuple[UpstreamConfig, ...] = ()  # besides the default Cloudflare account, in config order
    routes: Mapping[str, tuple[Target | str, ...]] = field(default_factory=dict)  # str: "@cf/…" on every account
    cooldown: float = 30.0
    failover_on: frozenset[str] = frozenset(FAILURE_KINDS)

    def route_name(self, name: str) -> str | None:
        """`name` (surrounding spaces ignored) if it names a route, else None."""
        stripped = name.strip()
        return stripped if stripped in self.routes else None

    def resolve(self, name: str, aliases: Mapping[str, str], *, vision: bool = False,
                vision_aliases: Mapping[str, str] | None = None) -> str:
        """The model a client's name stands for, as answers show it: a route's own name, else the Workers AI
        id (aliases, and vision aliases when `vision`, applied); an unknown or malformed name raises, as
        `resolve_model` does."""
        return self.route_name(name) or resolve_model(name, aliases, vision=vision, vision_aliases=vision_aliases)

    def upstream(self, name: str) -> UpstreamConfig | None:
        return next((u for u in self.upstreams if u.name == name), None)

    def public(self) -> dict[str, Any]:
        return public_routing(self)

    def policy(self, upstream: str) -> tuple[frozenset[str], float]:
        """(failover kinds, cooldown seconds) for targets on `upstream`."""
        found = self.upstream(upstream)
        kinds = found.failover_on if found and found.failover_on is not None else self.failover_on
        cooldown = found.cooldown if found and found.cooldown is not None else self.cooldown
        return kinds, cooldown


def with_secrets(config: RoutingConfig, environ: Mapping[str, str]) -> RoutingConfig:
    """The config with each `*_env` credential's value read from `environ` (None where it is not set)."""
    def fill(upstream: UpstreamConfig) -> UpstreamConfig:
        creds = tuple(replace(c, value=environ.get(c.env) or None) if c.env else c for c in upstream.credentials)
        return replace(upstream, credentials=creds)

    return replace(config, upstreams=tuple(fill(u) for u in config.upstreams))


def public_routing(config: RoutingConfig) -> dict[str, Any]:
    """The routing config as shown to a person: where keys come from, never their values."""
    upstreams = {}
    for u in config.upstreams:
        shown: dict[str, Any] = {"type": u.kind, "keys": [c.describe() + ("" if c.value or not c.env else " (not set)")
                                                         for c in u.credentials if c.value or c.env]}
        if u.account_id:
            shown["account_id"] = u.account_id
        if u.base_url:
            shown["base_url"] = u.base_url
        for name in ("timeout", "cooldown", "daily_neurons"):
            if getattr(u, name) is not None:
                shown[name] = getattr(u, name)
        if u.failover_on is not None:
            shown["failover_on"] = sorted(u.failover_on)
        if u.extra_fields:
            shown["extra_fields"] = sorted(u.extra_fields)
        if u.anthropic_version:
            shown["anthropic_version"] = u.anthropic_version
        upstreams[u.name] = shown
    return {"cooldown_seconds": config.cooldown, "failover_on": sorted(config.failover_on), "upstreams": upstreams,
            "routes": {name: [str(t) for t in chain] for name, chain in config.routes.items()}}

