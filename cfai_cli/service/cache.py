"""The response cache for the services: look an answer up before the upstream call, store the one it gave.

Imports anyio, core, store (on first use) and service.context (service.chat and service.embeddings call it). The
proxy puts what a request may do on its record (`cache_mode`, from the route, the key's flag and the `x-cfai-cache`
header; core.cache); the CLI leaves it None and never caches. Before a stored answer is served, the key's
model policy is judged on the chain the request resolves to (`Router.authorize`: a key that may not use the
model gets its 403 whatever is stored) and the request has been admitted by the rate limits like any other;
a hit makes no upstream call and spends no tokens. A streamed miss is stored when it ends cleanly, as the
completion its chunks add up to (core.translate.chat_assemble), so a later request, streamed or not, can
replay it. The store is SQLite, used from a worker thread; with `[coordination] url` it is Redis (server wiring
puts store.redis_cache's in the context's cache as SHARED_CACHE), so every replica serves what any stored.
A failing store is logged and the request goes on (a miss, nothing stored).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from cfai_cli.core import jsonfast
from cfai_cli.core.cache import cache_key, deterministic_temperature, plan
from cfai_cli.core.openai.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, StreamOptions
from cfai_cli.errors import CfaiError
from cfai_cli.service.chat_stream import ChatStream
from cfai_cli.service.context import Context

if TYPE_CHECKING:  # the store and anyio's threads are imported by the first request that may use the cache:
    # the CLI never caches, and a one-shot `cfai chat` should not pay for them (~10 ms); nor for the
    # embeddings models (only the embeddings service, which imports them, passes them here)
    from cfai_cli.core.openai.embeddings import EmbeddingList, EmbeddingRequest
    from cfai_cli.store.cache import CacheStore, Entry
    from cfai_cli.store.redis_cache import RedisCache

log = logging.getLogger("cfai.cache")
CACHE_UPSTREAM = "cache"  # who answered a hit, in x-cfai-upstream and the usage log's `upstream`
SHARED_CACHE = "answer_cache_shared"  # the context's cache entry holding the replicas' shared cache, if any


def shared_cache(ctx: Context) -> RedisCache | None:
    found: RedisCache | None = ctx.cache.get(SHARED_CACHE)
    return found


def cache_store(ctx: Context) -> CacheStore:
    from cfai_cli.store.cache import CacheStore

    store = ctx.cache.get("answer_cache")
    if not isinstance(store, CacheStore):
        store = ctx.cache["answer_cache"] = CacheStore(ctx.settings.storage)
    return store


@dataclass(slots=True)
class Slot:
    """One request's place in the cache: its key and tenant, what was found there, whether to store."""

    ctx: Context
    kind: str
    key: str
    tenant: str
    entry: Entry | None = None

    def hit(self) -> dict[str, Any]:
        """The stored answer, counted as a hit served by the cache (no tokens spent)."""
        assert self.entry is not None
        answer: dict[str, Any] = jsonfast.loads(self.entry.body)
        self.ctx.record.note_cache("hit")
        self.ctx.record.served(CACHE_UPSTREAM, self.entry.model or str(answer.get("model", "")))
        return answer

    async def store(self, answer: Mapping[str, Any]) -> None:
        ctx, config = self.ctx, self.ctx.settings.cache
        body = jsonfast.dumps(answer)
        if len(body) > config.max_entry_bytes:
            return
        shared = shared_cache(ctx)
        if shared is not None:  # Redis expires it; its maxmemory bounds the whole (docs/cache.md)
            await shared.put(self.key, body, tenant=self.tenant, model=ctx.record.model, ttl=config.ttl)
            return
        import anyio

        from cfai_cli.store.cache import Bounds

        bounds = Bounds(config.ttl, config.max_entries, config.max_bytes)
        now, model = ctx.clock(), ctx.record.model
        try:
            await anyio.to_thread.run_sync(lambda: cache_store(ctx).put(
                self.key, body, tenant=self.tenant, kind=self.kind, model=model, now=now, bounds=bounds))
        except CfaiError as exc:  # a full disk or a locked database costs the cache, not the answer
            log.error("could not store an answer in the response cache: %s", exc.message)


async def _slot(ctx: Context, kind: str, request: Mapping[str, Any], *, name: str, deterministic: bool,
                vision: bool = False, cloudflare_only: bool = False) -> Slot | None:
    """The request's slot (looked up when it may be), or None when the cache has nothing to do with it."""
    record = ctx.record
    if record.cache_mode is None:
        return None
    decided = plan(record.cache_mode, ctx.settings.cache, deterministic=deterministic)
    if not decided.store:
        record.note_cache(decided.status)
        return None
    chain = ctx.router.authorize(name, record, vision=vision, cloudflare_only=cloudflare_only)
    tenant = record.key_id or ""
    slot = Slot(ctx, kind, cache_key(kind, tenant=tenant, chain=chain, request=request), tenant)
    if decided.lookup and (shared := shared_cache(ctx)) is not None:
        slot.entry = await shared.get(slot.key, tenant=tenant)
    elif decided.lookup:
        import anyio

        now = ctx.clock()
        try:
            slot.entry = await anyio.to_thread.run_sync(lambda: cache_store(ctx).get(slot.key, tenant=tenant, now=now))
        except CfaiError as exc:
            log.error("could not read the response cache: %s", exc.message)
    if slot.entry is None:
        record.note_cache(decided.status)
    return slot


async def chat_slot(ctx: Context, req: ChatCompletionRequest) -> Slot | None:
    if ctx.record.cache_mode is None:  # the cache is off for this request: no dump to make (every chat asks)
        return None
    dump = req.model_dump(mode="json", by_alias=True, exclude_none=True)
    return await _slot(ctx, "chat", dump, name=req.model, vision=req.has_images(),
                       deterministic=deterministic_temperature(req.temperature))


async def embeddings_slot(ctx: Context, req: EmbeddingRequest, model_id: str) -> Slot | None:
    if ctx.record.cache_mode is None:
        return None
    dump = req.model_dump(mode="json", by_alias=True, exclude_none=True)
    return await _slot(ctx, "embeddings", dump, name=model_id, cloudflare_only=True, deterministic=True)


def chat_hit(ctx: Context, slot: Slot) -> ChatCompletion:
    """A stored chat answer as a new completion: its own id and time, the stored choices and usage."""
    completion = cast(ChatCompletion, slot.hit())
    completion["id"], completion["created"] = ctx.ids("chatcmpl"), ctx.now()
    return completion


def embeddings_hit(slot: Slot) -> EmbeddingList:
    return cast("EmbeddingList", slot.hit())


def with_usage(req: ChatCompletionRequest) -> ChatCompletionRequest:
    """The request as sent upstream when its stream is to be stored: with a usage chunk to store."""
    if req.stream_options is not None and req.stream_options.include_usage:
        return req
    options = (req.stream_options.model_copy(update={"include_usage": True}) if req.stream_options
               else StreamOptions(include_usage=True))
    return req.model_copy(update={"stream_options": options})


def storing(slot: Slot, stream: ChatStream, *, show_usage: bool) -> ChatStream:
    """`stream` as the client sees it (usage only if it asked), stored whole once it has ended cleanly."""
    return ChatStream(_storing(slot, stream, show_usage=show_usage), owns=(stream,))


async def _storing(slot: Slot, stream: ChatStream, *, show_usage: bool
                   ) -> AsyncGenerator[list[ChatCompletionChunk], None]:
    kept: list[ChatCompletionChunk] = []
    size, limit = 0, slot.ctx.settings.cache.max_entry_bytes
    async for batch in stream.batches():
        if size <= limit:  # an answer past the bound is not stored: stop holding its chunks
            kept += batch
            size += sum(len(jsonfast.dumps(chunk.get("choices"))) for chunk in batch)
        yield batch if show_usage else _without_usage(batch)
    # Only a stream that ended by itself gets here: an error, or a client gone, leaves the generator earlier.
    # core.translate.chat_assemble is imported here, with the cache on: not by every chat that imports this module.
    from cfai_cli.core.translate.chat_assemble import assemble_completion

    completion = assemble_completion(kept) if size <= limit else None
    if completion is not None:
        await slot.store(completion)


def _without_usage(batch: list[ChatCompletionChunk]) -> list[ChatCompletionChunk]:
    out: list[ChatCompletionChunk] = []
    for chunk in batch:
        if "usage" in chunk:
            if not chunk["choices"]:
                continue  # the usage-only chunk the client did not ask for
            chunk = cast(ChatCompletionChunk, {k: v for k, v in chunk.items() if k != "usage"})
        out.append(chunk)
    return out
