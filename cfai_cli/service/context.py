"""The per-process context that service functions run in: settings, upstream clients, clock and ids.

Imports upstream, settings, errors. The clock and the id source are fields so tests can pin them. The context
is built whole by `open_context` and never changed after; `for_request` gives a request its own copy.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cfai_cli.core.redact import Scrubber
from cfai_cli.core.routing import DEFAULT_UPSTREAM, Credential, UpstreamConfig
from cfai_cli.service.accounts import WorkersPool
from cfai_cli.service.catalogue_cache import cached_ids
from cfai_cli.service.record import RequestRecord
from cfai_cli.settings import OFFLINE_ACCOUNT_ID, OFFLINE_API_BASE, Settings
from cfai_cli.upstream.fetch import ImageFetcher
from cfai_cli.upstream.lean import Lean
from cfai_cli.upstream.provider import ChatUpstream, UpstreamType
from cfai_cli.upstream.router import Lane, Meter, Router, SharedRests
from cfai_cli.upstream.workers import WorkersAIClient

if TYPE_CHECKING:
    from typing import TypeAlias

    import httpx

    from cfai_cli.upstream.inprocess import InProcess

    # What replaces the network to the upstreams (tests, --offline): an httpx transport, or a Lean such as
    # upstream.inprocess's emulator.
    Transport: TypeAlias = httpx.AsyncBaseTransport | Lean

# Prefixes OpenAI joins with "_" (call_…, resp_…, msg_…); the others take "-" (chatcmpl-…, cmpl-…).
_UNDERSCORE_PREFIXES = frozenset({"call", "resp", "msg", "fc", "fco", "rs", "ctc", "ctco", "item", "batch"})


def new_id(prefix: str) -> str:
    """OpenAI-style ids: chatcmpl-…, call_…, resp_…; 24 random url-safe characters."""
    sep = "_" if prefix in _UNDERSCORE_PREFIXES else "-"
    return f"{prefix}{sep}{secrets.token_urlsafe(18).replace('-', 'x').replace('_', 'y')}"


@dataclass
class Context:
    """The process's context; `for_request` gives one request's view, which works for its record."""

    settings: Settings
    images: ImageFetcher
    router: Router
    clock: Callable[[], float] = time.time
    ids: Callable[[str], str] = new_id
    cache: dict[str, Any] = field(default_factory=dict)
    record: RequestRecord = field(default_factory=RequestRecord)  # the CLI's: every model, no limits

    def now(self) -> int:
        return int(self.clock())

    @property
    def workers(self) -> WorkersPool:
        """Workers AI over every Cloudflare account, with failover, working for this context's record."""
        return WorkersPool(self)

    def for_request(self, record: RequestRecord) -> Context:
        # A shallow copy with its record changed: dataclasses.replace re-runs __init__ (~3 µs a request), and
        # copy.copy goes through __reduce_ex__ (~2 µs).
        ctx: Context = object.__new__(type(self))
        ctx.__dict__.update(self.__dict__)
        ctx.record = record
        return ctx


def scrubber_for(settings: Settings) -> Scrubber:
    """Every secret the settings hold: the Cloudflare token and account id, each [upstreams.*] key (every
    token of a rotation list) and account id. None of them may reach a client, /health or the log."""
    values: list[str | None] = [settings.api_token, settings.account_id]
    for upstream in settings.routing.upstreams:
        values.append(upstream.account_id)
        values += [cred.value for cred in upstream.credentials]
    return Scrubber(values)


def offline_transport() -> InProcess:
    """`--offline`'s network: the emulator in this process, reached without httpx (upstream.inprocess)."""
    from cfai_cli.emulator import create_emulator_app
    from cfai_cli.upstream.inprocess import InProcess

    return InProcess(create_emulator_app())


def build_lanes(settings: Settings, transport: Transport | None) -> list[Lane]:
    """A lane per key of each upstream: the default Cloudflare account first, then config order.

    Offline, every Cloudflare account is the emulator and the other upstreams are unavailable.
    """
    account_id, token = settings.require_credentials()
    pool = max(1, settings.max_connections)

    def workers(account: str, key: str, base: str | None, timeout: float | None) -> WorkersAIClient:
        return WorkersAIClient(
            account_id=OFFLINE_ACCOUNT_ID if settings.offline else account, api_token=key,
            api_base=OFFLINE_API_BASE if settings.offline else (base or settings.api_base),
            timeout=timeout or settings.timeout, max_retries=settings.max_retries, transport=transport,
            max_connections=pool, fast_http=settings.fast_http)

    lanes = [Lane(DEFAULT_UPSTREAM, DEFAULT_UPSTREAM, "cloudflare", workers(account_id, token, None, None))]
    for upstream in settings.routing.upstreams:
        for i, cred in enumerate(upstream.credentials):
            label = upstream.name if i == 0 else f"{upstream.name}#{i + 1}"
            if upstream.kind == "cloudflare":
                if cred.value is None and not settings.offline:
                    lanes.append(Lane(label, upstream.name, "cloudflare", None, f"{cred.describe()} is not set"))
                else:
                    assert upstream.account_id is not None
                    lanes.append(Lane(label, upstream.name, "cloudflare", workers(
                        upstream.account_id, cred.value or "offline", upstream.base_url, upstream.timeout)))
            else:
                lanes.append(_chat_lane(settings, upstream, label, cred,
                                        None if isinstance(transport, Lean) else transport, pool))
    return lanes


def _chat_lane(settings: Settings, upstream: UpstreamConfig, label: str, cred: Credential,
               transport: httpx.AsyncBaseTransport | None, pool: int) -> Lane:
    """A lane of an upstream that answers chat requests itself (openai, gemini, anthropic)."""
    kind: UpstreamType = "anthropic" if upstream.kind == "anthropic" else "openai"
    if settings.offline:
        return Lane(label, upstream.name, kind, None, "offline mode (no network)")
    if cred.value is None and cred.env is not None:
        return Lane(label, upstream.name, kind, None, f"{cred.describe()} is not set")
    assert upstream.base_url is not None
    timeout = upstream.timeout or settings.timeout
    client: ChatUpstream
    # Imported here: only a config with such an upstream needs these clients (and their translation
    # modules), never the default Cloudflare-only setup, whose one-shot commands would pay for them.
    if kind == "anthropic":
        from cfai_cli.upstream.anthropic import AnthropicClient

        assert cred.value is not None and upstream.anthropic_version is not None  # config_file requires a key
        client = AnthropicClient(name=upstream.name, api_key=cred.value, base_url=upstream.base_url,
                                 version=upstream.anthropic_version, extra_fields=upstream.extra_fields,
                                 timeout=timeout, transport=transport, max_connections=pool,
                                 fast_http=settings.fast_http)
    else:
        from cfai_cli.upstream.openai_compat import OpenAICompatClient

        client = OpenAICompatClient(name=upstream.name, base_url=upstream.base_url, api_key=cred.value,
                                    timeout=timeout, transport=transport, max_connections=pool,
                                    fast_http=settings.fast_http)
    return Lane(label, upstream.name, kind, client)


@asynccontextmanager
async def open_context(
    settings: Settings,
    *,
    transport: Transport | None = None,
    image_transport: httpx.AsyncBaseTransport | None = None,
    meter: Meter | None = None,
    rests: SharedRests | None = None,
) -> AsyncIterator[Context]:
    """A ready Context; `transport` replaces the network to every upstream (tests, --offline); `meter` tells the
    router what each Cloudflare account spent today (its daily caps; the proxy gives one); `rests` shares the
    router's cooldowns with the gateway's other replicas (`[coordination] url`)."""
    if settings.offline and transport is None:
        transport = offline_transport()
    cache: dict[str, Any] = {}
    router = Router(settings.routing, build_lanes(settings, transport), aliases=settings.aliases,
                    vision_aliases=settings.vision_aliases, scrubber=scrubber_for(settings),
                    catalogue=lambda: cached_ids(cache), meter=meter, shared=rests)
    images = ImageFetcher(allow_private=settings.allow_private_fetch, transport=image_transport)
    ctx = Context(settings=settings, images=images, router=router, cache=cache)
    try:
        yield ctx
    finally:
        await router.aclose()
        await images.aclose()
