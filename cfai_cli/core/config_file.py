"""The tables of config.toml as a pydantic schema (`extra="forbid"`), so every typo fails with its TOML path.

Pure: pydantic, the standard library, core.catalog, core.routing and errors. The scalar settings (timeout, …)
are added to `ConfigTables` by cfai_cli.settings.file from the Settings dataclass, their one list. core.config_problem
turns a pydantic ValidationError into one line naming the file, the line and the TOML path, never a pydantic dump.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from cfai_cli.core.blobs import BlobsConfig, parse_s3_url
from cfai_cli.core.cache import CACHE_ROUTES, CacheConfig
from cfai_cli.core.catalog import DEFAULT_ALIASES, validate_model_id
from cfai_cli.core.config_shapes import AccountId, HttpUrl
from cfai_cli.core.coordination import CoordinationConfig, OnFailure, check_redis_url
from cfai_cli.core.cost import FREE_NEURONS_PER_DAY
from cfai_cli.core.routing import (
    DEFAULT_UPSTREAM,
    FAILURE_KINDS,
    Credential,
    RoutingConfig,
    Target,
    UpstreamConfig,
)
from cfai_cli.core.store_url import StoreConfig, check_store_url
from cfai_cli.errors import ConfigError, InvalidRequest

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")
ANTHROPIC_BASE_URL = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"
GEMINI_BASE_URL = "https://generativelanguage.googleapis.com/v1beta/openai"
GEMINI_KEY_ENV = "GEMINI_API_KEY"


def _one_or_list(value: Any) -> Any:
    """A TOML string or a list of strings, each non-empty; surrounding spaces dropped."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v.strip() for v in items):
        raise ValueError("must be a non-empty string or a list of them")
    return [v.strip() for v in items]


def _env_names(names: list[str]) -> list[str]:
    for name in names:
        if not _ENV_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not an environment variable name")
    return names


def _seconds(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value in (
            float("inf"), float("-inf")) or value < 0:
        raise ValueError("must be a number of seconds (0 or more)")
    return float(value)


def _positive(value: float) -> float:
    if value == 0:
        raise ValueError("must be more than 0 seconds")
    return value


def _names_from(known: tuple[str, ...], what: str, listed: str) -> Any:
    """A validator of a list of names, each one of `known` (failure kinds, cache routes)."""
    text = ", ".join(known)

    def check(value: Any) -> Any:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"must be a list of {what}s: {text}")
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"unknown {what} {unknown[0]!r}; {listed} {text}")
        return frozenset(value)

    return check


_kinds = _names_from(tuple(FAILURE_KINDS), "failure kind", "known:")


def _model_id(value: str) -> str:
    try:
        return validate_model_id(value.strip())
    except InvalidRequest as exc:
        raise ValueError(exc.message) from None


def _extra_fields(value: Any) -> Any:
    if not isinstance(value, list) or not all(isinstance(f, str) and _FIELD.fullmatch(f) for f in value):
        raise ValueError('must be a list of request field names, e.g. ["provider"]')
    return frozenset(value)


def _version(value: str) -> str:
    if not _VERSION.fullmatch(value):
        raise ValueError('must be an Anthropic API version date, e.g. "2023-06-01"')
    return value


def _upstream_name(name: str) -> str:
    if not _NAME.fullmatch(name) or name == DEFAULT_UPSTREAM:
        raise ValueError(f"upstream names are letters, digits, '_', '-' and '.', and {DEFAULT_UPSTREAM!r} is the "
                         "account of CLOUDFLARE_ACCOUNT_ID; pick another name")
    return name


def _route_name(name: str) -> str:
    if not name.strip() or len(name) > 200:
        raise ValueError("a route needs a name (the model name clients send)")
    return name


def _targets(texts: list[str]) -> list[str]:
    for text in texts:
        _, sep, model = text.partition(":")
        if not text.startswith("@") and (not sep or not model.strip()):
            raise ValueError(f"{text!r} is neither a Workers AI id (@cf/…) nor \"upstream:model\"")
    return texts


Strings = Annotated[list[str], BeforeValidator(_one_or_list)]
EnvNames = Annotated[Strings, AfterValidator(_env_names)]
Seconds = Annotated[float, BeforeValidator(_seconds)]
Kinds = Annotated[frozenset[str], BeforeValidator(_kinds)]


class Table(BaseModel):
    """A TOML table: unknown keys are mistakes, not extensions."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class RoutingTable(Table):
    cooldown_seconds: Seconds = 30.0  # how long a failing target rests (Retry-After wins)
    failover_on: Kinds = frozenset(FAILURE_KINDS)


_cache_routes = _names_from(tuple(CACHE_ROUTES), "route", "the cache serves")


class CacheTable(Table):
    """[cache]: the response cache (core.cache; docs/cache.md)."""

    enabled: bool = False
    ttl_seconds: Annotated[Seconds, AfterValidator(_positive)] = 3600.0
    max_entries: Annotated[int, Field(ge=1, strict=True)] = 10_000
    max_bytes: Annotated[int, Field(ge=1, strict=True)] = 256 * 1024 * 1024
    max_entry_bytes: Annotated[int, Field(ge=1, strict=True)] = 2 * 1024 * 1024
    routes: Annotated[frozenset[str], BeforeValidator(_cache_routes)] = frozenset(CACHE_ROUTES)
    by_default: bool = False
    temperature_zero_only: bool = True

    def runtime(self) -> CacheConfig:
        return CacheConfig(enabled=self.enabled, ttl=self.ttl_seconds, max_entries=self.max_entries,
                           max_bytes=self.max_bytes, max_entry_bytes=self.max_entry_bytes, routes=self.routes,
                           by_default=self.by_default, temperature_zero_only=self.temperature_zero_only)


def _s3_url(value: str) -> str:
    parse_s3_url(value)  # a ValueError names what is wrong; pydantic adds the TOML path
    return value


class BlobsTable(Table):
    """[blobs]: hosted images on an S3-compatible store (core.blobs; docs/configuration.md). No url: disk."""

    url: Annotated[str, AfterValidator(_s3_url)] | None = None
    endpoint: HttpUrl | None = None
    region: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9-]+$")] | None = None

    def runtime(self) -> BlobsConfig:
        return BlobsConfig(url=self.url, endpoint=self.endpoint, region=self.region)


class CoordinationTable(Table):
    """[coordination]: rate limits shared by replicas in Redis (core.coordination; docs/configuration.md)."""

    url: Annotated[str, AfterValidator(check_redis_url)] | None = Field(default=None, repr=False)
    on_failure: OnFailure = "closed"

    def runtime(self) -> CoordinationConfig:
        return CoordinationConfig(url=self.url, on_failure=self.on_failure)


class StoreTable(Table):
    """[store]: the database of keys, usage, responses... (core.store_url; docs/database.md). No url: cfai.db."""

    url: Annotated[str, AfterValidator(check_store_url)] | None = Field(default=None, repr=False)

    def runtime(self) -> StoreConfig:
        return StoreConfig(url=self.url)


class _Upstream(Table):
    timeout: Annotated[Seconds, AfterValidator(_positive)] | None = None  # None: the global timeout
    cooldown_seconds: Seconds | None = None  # None: the [routing] default
    failover_on: Kinds | None = None


class CloudflareUpstream(_Upstream):
    """Another Cloudflare account."""

    type: Literal["cloudflare"]
    account_id: AccountId
    api_token: Strings | None = Field(default=None, repr=False)
    api_token_env: EnvNames | None = None
    api_base: HttpUrl | None = None
    # A daily cap on the account's neurons (docs/cost.md): the router skips it once spent, until 00:00 UTC.
    daily_neurons: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    free_tier_only: bool = False  # the cap is the free allocation, 10,000 neurons a day

    @model_validator(mode="after")
    def _has_a_token(self) -> CloudflareUpstream:
        if not self.api_token and not self.api_token_env:
            raise ValueError("give api_token_env (the variable holding the token) or api_token")
        if self.free_tier_only and self.daily_neurons is not None:
            raise ValueError("give daily_neurons or free_tier_only = true (a cap of 10,000), not both")
        return self

    def runtime(self, name: str) -> UpstreamConfig:
        creds = [Credential(value=v) for v in self.api_token or ()] + [Credential(env=e)
                                                                      for e in self.api_token_env or ()]
        cap = float(FREE_NEURONS_PER_DAY) if self.free_tier_only else self.daily_neurons
        return UpstreamConfig(name, "cloudflare", tuple(creds), account_id=self.account_id, base_url=self.api_base,
                              timeout=self.timeout, cooldown=self.cooldown_seconds, failover_on=self.failover_on,
                              daily_neurons=cap)


class OpenAIUpstream(_Upstream):
    """Any OpenAI-compatible provider, as a pass-through."""

    type: Literal["openai"]
    base_url: HttpUrl
    api_key: Strings | None = Field(default=None, repr=False)
    api_key_env: EnvNames | None = None  # neither key: a local server (Ollama, vLLM)
    extra_fields: Annotated[frozenset[str], BeforeValidator(_extra_fields)] = frozenset()

    def runtime(self, name: str) -> UpstreamConfig:
        creds = [Credential(value=v) for v in self.api_key or ()] + [Credential(env=e) for e in self.api_key_env or ()]
        return UpstreamConfig(name, "openai", tuple(creds) or (Credential(),), base_url=self.base_url,
                              timeout=self.timeout, cooldown=self.cooldown_seconds, failover_on=self.failover_on,
                              extra_fields=self.extra_fields)


class GeminiUpstream(OpenAIUpstream):
    """Google's Gemini API through its OpenAI-compatible endpoint: the openai type with Gemini's defaults."""

    type: Literal["gemini"]  # type: ignore[assignment]  # a preset: the same table, its own tag
    base_url: HttpUrl = GEMINI_BASE_URL

    def runtime(self, name: str) -> UpstreamConfig:
        if not self.api_key and not self.api_key_env:
            return self.model_copy(update={"api_key_env": [GEMINI_KEY_ENV]}).runtime(name)
        return super().runtime(name)


class AnthropicUpstream(_Upstream):
    """The Anthropic Messages API; chat requests are translated (core.translate.anthropic_egress)."""

    type: Literal["anthropic"]
    base_url: HttpUrl = ANTHROPIC_BASE_URL
    anthropic_version: Annotated[str, AfterValidator(_version)] = ANTHROPIC_VERSION
    api_key: Strings | None = Field(default=None, repr=False)
    api_key_env: EnvNames | None = None
    extra_fields: Annotated[frozenset[str], BeforeValidator(_extra_fields)] = frozenset()  # copied as sent

    @model_validator(mode="after")
    def _has_a_key(self) -> AnthropicUpstream:
        if not self.api_key and not self.api_key_env:
            raise ValueError('give api_key_env (the variable holding the key, e.g. "ANTHROPIC_API_KEY") or api_key')
        return self

    def runtime(self, name: str) -> UpstreamConfig:
        creds = [Credential(value=v) for v in self.api_key or ()] + [Credential(env=e) for e in self.api_key_env or ()]
        return UpstreamConfig(name, "anthropic", tuple(creds), base_url=self.base_url, timeout=self.timeout,
                              cooldown=self.cooldown_seconds, failover_on=self.failover_on,
                              extra_fields=self.extra_fields, anthropic_version=self.anthropic_version)


UPSTREAM_TYPES: dict[str, type[_Upstream]] = {"cloudflare": CloudflareUpstream, "openai": OpenAIUpstream,
                                              "gemini": GeminiUpstream, "anthropic": AnthropicUpstream}
Upstream = Annotated[CloudflareUpstream | OpenAIUpstream | GeminiUpstream | AnthropicUpstream,
                     Field(discriminator="type")]


class ConfigTables(Table):
    """The tables of config.toml; settings.file adds the scalar keys."""

    aliases: dict[str, str] = {}
    # alias -> the model that serves it when a request carries images (core.catalog)
    vision_aliases: dict[str, Annotated[str, AfterValidator(_model_id)]] = {}
    routing: RoutingTable = Field(default_factory=RoutingTable)  # built on use (defer_build), not at import
    upstreams: dict[Annotated[str, AfterValidator(_upstream_name)], Upstream] = {}
    routes: dict[Annotated[str, AfterValidator(_route_name)], Annotated[Strings, AfterValidator(_targets)]] = {}
    cache: CacheTable = Field(default_factory=CacheTable)
    blobs: BlobsTable = Field(default_factory=BlobsTable)
    coordination: CoordinationTable = Field(default_factory=CoordinationTable)
    store: StoreTable = Field(default_factory=StoreTable)

    def routing_config(self) -> RoutingConfig:
        """The runtime routing value; a ValueError is (TOML path, message) for a route naming no upstream."""
        upstreams = tuple(table.runtime(name) for name, table in self.upstreams.items())
        names = {DEFAULT_UPSTREAM, *self.upstreams}
        routes: dict[str, tuple[Target | str, ...]] = {}
        for name, chain in self.routes.items():
            links: list[Target | str] = []
            for text in chain:
                upstream, _, model = text.partition(":")
                if text.startswith("@"):
                    links.append(text)  # a Workers AI id: every Cloudflare account in order
                elif upstream not in names:
                    raise Misplaced(("routes", name), f"{text!r} names the upstream {upstream!r}, which is not "
                                                      f"defined; defined: {', '.join(sorted(names))}")
                else:
                    links.append(Target(upstream, model.strip()))
            routes[name] = tuple(links)
        return RoutingConfig(upstreams=upstreams, routes=routes, cooldown=self.routing.cooldown_seconds,
                             failover_on=self.routing.failover_on)

    def merged_aliases(self) -> dict[str, str]:
        return {**DEFAULT_ALIASES, **self.aliases}

    def check_vision_aliases(self) -> None:
        """Each vision alias replaces an alias's model for requests with images, so the alias must exist."""
        aliases = self.merged_aliases()
        for name in self.vision_aliases:
            if name not in aliases:
                raise Misplaced(("vision_aliases", name), vision_alias_orphan(name))


def vision_alias_orphan(name: str) -> str:
    return (f"{name!r} is not an alias; a vision alias only replaces an alias's model for requests with "
            f"images, so add [aliases] {name} first")


class Misplaced(ValueError):
    """A mistake found after the schema: where it is (a TOML path) and what it is."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


def parse_tables(data: Mapping[str, Any], *, source: str, model: type[ConfigTables] = ConfigTables,
                 hints: Mapping[str, str] | None = None, text: str | None = None
                 ) -> tuple[ConfigTables, RoutingConfig]:
    """A parsed config file checked against `model`, with its routing; a ConfigError names the mistake's place
    (its line, when `text` is the file's text) and how to fix it."""
    top = set(model.model_fields)
    try:
        tables = model.model_validate(data)
        tables.check_vision_aliases()
        return tables, tables.routing_config()
    except (ValidationError, Misplaced) as exc:
        from cfai_cli.core.config_problem import problem  # it reads these tables' fields: imported when needed

        raise ConfigError(problem(exc, source, top, hints or {}, text)) from None


def parse_routing(data: Mapping[str, Any], *, source: str) -> RoutingConfig:
    """The routing part of a parsed config file (`[routing]`, `[upstreams.*]`, `[routes]`)."""
    return parse_tables(data, source=source)[1]
