"""Routing as data: upstreams, routes (a model name -> an ordered chain of targets), failover and cooldown.

Pure: standard library, core.catalog and cfai_cli.errors; the clock is an argument. `parse_routing` reads the
`[routing]`, `[upstreams.*]` and `[routes]` tables of config.toml. What a failure is and how long its
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

    [routes]
    fast = ["@cf/meta/llama-3.1-8b-instruct-fast", "groq:llama-3.1-8b-instant"]
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from cfai_cli.core.catalog import is_account_id, resolve_model
from cfai_cli.errors import (
    ConfigError,
)

DEFAULT_UPSTREAM = "cloudflare"  # the account of CLOUDFLARE_ACCOUNT_ID / CLOUDFLARE_API_TOKEN
FAILURE_KINDS = ("rate_limit", "quota", "capacity", "server", "timeout", "auth", "not_found", "forbidden")
# Failures that belong to the account or key (every model on it), not to one model.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_UPSTREAM_KEYS = {
    "cloudflare": {"type", "account_id", "api_token", "api_token_env", "api_base", "timeout", "cooldown_seconds",
                   "failover_on"},
    "openai": {"type", "base_url", "api_key", "api_key_env", "timeout", "cooldown_seconds", "failover_on",
               "extra_fields"},
}


@dataclass(frozen=True, slots=True)
class Credential:
    """One key of an upstream: its value (if known), or the environment variable that holds it."""

    value: str | None = field(default=None, repr=False)
    env: str | None = None

    def describe(self) -> str:
        return f"${self.env}" if self.env else "a key in config.toml"


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    name: str
    kind: str  # "cloudflare" or "openai"
    credentials: tuple[Credential, ...] = ()
    account_id: str | None = None
    base_url: str | None = None  # openai: the API root (…/v1); cloudflare: the API base (…/client/v4), if not default
    timeout: float | None = None  # one attempt on this upstream; None = the global timeout
    cooldown: float | None = None  # None = the [routing] default
    failover_on: frozenset[str] | None = None  # None = the [routing] default
    extra_fields: frozenset[str] = frozenset()  # openai: request fields passed on besides the OpenAI schema's


@dataclass(frozen=True, slots=True)
class Target:
    """One link of a chain: a model on an upstream."""

    upstream: str
    model: str

    def __str__(self) -> str:
        return f"{self.upstream}:{self.model}"


@dataclass(frozen=True, slots=True)
class RoutingConfig:
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


# ---- parsing config.toml ---------------------------------------------------------------------------


def _strings(value: Any, where: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v.strip() for v in items):
        raise ConfigError(f"{where} must be a non-empty string or a list of them.")
    return [v.strip() for v in items]


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where} must be a number of seconds (0 or more).")
    return float(value)


def _kinds(value: Any, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of failure kinds: {', '.join(FAILURE_KINDS)}.")
    unknown = sorted(set(value) - set(FAILURE_KINDS))
    if unknown:
        raise ConfigError(f"{where}: unknown failure kind {unknown[0]!r}; known: {', '.join(FAILURE_KINDS)}.")
    return frozenset(value)


def _credentials(table: Mapping[str, Any], value_key: str, env_key: str, where: str) -> tuple[Credential, ...]:
    creds: list[Credential] = []
    if value_key in table:
        creds += [Credential(value=v) for v in _strings(table[value_key], f"{where}.{value_key}")]
    if env_key in table:
        for name in _strings(table[env_key], f"{where}.{env_key}"):
            if not _ENV_NAME.fullmatch(name):
                raise ConfigError(f"{where}.{env_key}: {name!r} is not an environment variable name.")
            creds.append(Credential(env=name))
    return tuple(creds)


def _upstream(name: str, table: Any, source: str) -> UpstreamConfig:
    where = f"[upstreams.{name}] in {source}"
    if not isinstance(table, Mapping):
        raise ConfigError(f"upstreams.{name} in {source} must be a table.")
    if not _NAME.fullmatch(name) or name == DEFAULT_UPSTREAM:
        raise ConfigError(f"{where}: upstream names are letters, digits, '_', '-' and '.', and "
                          f"{DEFAULT_UPSTREAM!r} is the account of CLOUDFLARE_ACCOUNT_ID; pick another name.")
    kind = table.get("type")
    if kind not in _UPSTREAM_KEYS:
        raise ConfigError(f"{where}: type must be \"cloudflare\" or \"openai\" (an OpenAI-compatible API).")
    unknown = sorted(set(table) - _UPSTREAM_KEYS[kind])
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(sorted(_UPSTREAM_KEYS[kind]))}.")
    timeout = _seconds(table["timeout"], f"{where}: timeout") if "timeout" in table else None
    if timeout == 0:
        raise ConfigError(f"{where}: timeout must be more than 0 seconds.")
    cooldown = _seconds(table["cooldown_seconds"], f"{where}: cooldown_seconds") if "cooldown_seconds" in table \
        else None
    kinds = _kinds(table["failover_on"], f"{where}: failover_on") if "failover_on" in table else None
    if kind == "cloudflare":
        account = table.get("account_id")
        if not isinstance(account, str) or not is_account_id(account.strip()):
            raise ConfigError(f"{where}: account_id must be the 32-character id of the Cloudflare account.")
        creds = _credentials(table, "api_token", "api_token_env", where)
        if not creds:
            raise ConfigError(f"{where}: give api_token_env (the variable holding the token) or api_token.")
        base = table.get("api_base")
        if base is not None and (not isinstance(base, str) or not base.startswith(("http://", "https://"))):
            raise ConfigError(f"{where}: api_base must be an http(s) URL.")
        return UpstreamConfig(name, kind, creds, account_id=account.strip(),
                              base_url=base.rstrip("/") if base else None, timeout=timeout, cooldown=cooldown,
                              failover_on=kinds)
    url = table.get("base_url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: base_url must be the provider's API root, e.g. https://api.groq.com/openai/v1.")
    creds = _credentials(table, "api_key", "api_key_env", where) or (Credential(),)  # keyless: a local server
    extra = table.get("extra_fields", [])
    if not isinstance(extra, list) or not all(isinstance(f, str) and _FIELD.fullmatch(f) for f in extra):
        raise ConfigError(f"{where}: extra_fields must be a list of request field names, e.g. [\"provider\"].")
    return UpstreamConfig(name, kind, creds, base_url=url.rstrip("/"), timeout=timeout, cooldown=cooldown,
                          failover_on=kinds, extra_fields=frozenset(extra))


def _target(text: str, names: set[str], where: str) -> Target | str:
    if text.startswith("@"):
        return text  # a Workers AI id: every Cloudflare account in order
    upstream, sep, model = text.partition(":")
    if not sep or not model.strip():
        raise ConfigError(f"{where}: {text!r} is neither a Workers AI id (@cf/…) nor \"upstream:model\".")
    if upstream not in names:
        raise ConfigError(f"{where}: {text!r} names the upstream {upstream!r}, which is not defined; "
                          f"defined: {', '.join(sorted(names))}.")
    return Target(upstream, model.strip())


def parse_routing(data: Mapping[str, Any], *, source: str) -> RoutingConfig:
    """The routing part of a parsed config file (a ConfigError names what is wrong and where)."""
    routing = data.get("routing", {})
    if not isinstance(routing, Mapping):
        raise ConfigError(f"[routing] in {source} must be a table.")
    unknown = sorted(set(routing) - {"cooldown_seconds", "failover_on"})
    if unknown:
        raise ConfigError(f"[routing] in {source}: unknown key {unknown[0]!r} (known: cooldown_seconds, failover_on).")
    cooldown = _seconds(routing.get("cooldown_seconds", 30.0), f"[routing] cooldown_seconds in {source}")
    kinds = _kinds(routing["failover_on"], f"[routing] failover_on in {source}") if "failover_on" in routing \
        else frozenset(FAILURE_KINDS)
    tables = data.get("upstreams", {})
    if not isinstance(tables, Mapping):
        raise ConfigError(f"[upstreams] in {source} must hold one table per upstream, e.g. [upstreams.groq].")
    upstreams = tuple(_upstream(name, table, source) for name, table in tables.items())
    names = {DEFAULT_UPSTREAM, *(u.name for u in upstreams)}
    raw_routes = data.get("routes", {})
    if not isinstance(raw_routes, Mapping):
        raise ConfigError(f"[routes] in {source} must map model names to lists of targets.")
    routes: dict[str, tuple[Target | str, ...]] = {}
    for name, chain in raw_routes.items():
        where = f"[routes] {name} in {source}"
        if not name.strip() or len(name) > 200:
            raise ConfigError(f"{where}: a route needs a name (the model name clients send).")
        routes[name] = tuple(_target(t, names, where) for t in _strings(chain, where))
    return RoutingConfig(upstreams=upstreams, routes=routes, cooldown=cooldown, failover_on=kinds)


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
        for name in ("timeout", "cooldown"):
            if getattr(u, name) is not None:
                shown[name] = getattr(u, name)
        if u.failover_on is not None:
            shown["failover_on"] = sorted(u.failover_on)
        if u.extra_fields:
            shown["extra_fields"] = sorted(u.extra_fields)
        upstreams[u.name] = shown
    return {"cooldown_seconds": config.cooldown, "failover_on": sorted(config.failover_on), "upstreams": upstreams,
            "routes": {name: [str(t) for t in chain] for name, chain in config.routes.items()}}


# ---- failures and cooldowns -------------------------------------------------------------------------
