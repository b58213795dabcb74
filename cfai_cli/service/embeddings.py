"""Embeddings for both front ends: validate, split into upstream batches, run them concurrently, reassemble.

Imports core, upstream (through Context), errors. Batches keep their input order whatever order they
finish in; a length error from Workers AI is pinned on an input index so the client can fix it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from cfai_cli.core.catalog import resolve_model
from cfai_cli.core.jsonfast import RawJson
from cfai_cli.core.openai.embeddings import EmbeddingList, EmbeddingRequest
from cfai_cli.core.translate.embeddings import (
    batches,
    check_request,
    embedding_model,
    encode_base64,
    from_workers_embeddings,
    longest,
    parse_vectors,
    to_workers_embeddings,
)
from cfai_cli.core.workers.chat import parse_usage
from cfai_cli.errors import InvalidRequest
from cfai_cli.service import cache
from cfai_cli.service.context import Context
from cfai_cli.service.gather import gather_all

MAX_CONCURRENT_BATCHES = 4
_LENGTH_HINTS = ("too long", "sequence length", "maximum context", "context length", "too many tokens")


def _length_error(exc: InvalidRequest, texts: list[str], start: int, model_id: str) -> InvalidRequest:
    if str(exc.upstream_code) != "3030" and not any(h in exc.message.lower() for h in _LENGTH_HINTS):
        return exc
    index = longest(texts, start)
    return InvalidRequest(f"input[{index}] is too long for {model_id}: {exc.message}", param=f"input[{index}]",
                          code="context_length_exceeded", upstream_code=exc.upstream_code)


async def _run_batch(ctx: Context, model_id: str, texts: list[str], as_json: bool) -> Any:
    try:  # as_json: the vectors' text is all the answer needs, not their floats (core.workers.vector_cut)
        return await ctx.workers.run(model_id, to_workers_embeddings(texts), vectors="text" if as_json else True)
    except InvalidRequest as exc:
        # bge-m3 documents its vectors under the `contexts` mode (reference §4); if it refuses `text`, ask that way.
        if "bge-m3" not in model_id or str(exc.upstream_code) != "5006":
            raise
        return await ctx.workers.run(model_id, {"contexts": [{"text": t} for t in texts]})


async def create_embeddings(ctx: Context, req: EmbeddingRequest, *, progress: Callable[[int], None] | None = None,
                            as_json: bool = False) -> EmbeddingList:
    """The OpenAI embeddings list for `req`; `progress(n)` is told each time n more inputs are done. `as_json`:
    for an answer that is only written out (the proxy's), float vectors at the model's own size may be kept as
    the JSON text Workers AI sent (`jsonfast.RawJson`) instead of lists of floats."""
    ctx.record.asked = req.model
    model_id = resolve_model(req.model, ctx.settings.aliases)
    texts = check_request(req, embedding_model(model_id))
    slot = await cache.embeddings_slot(ctx, req, model_id)
    if slot is not None and slot.entry is not None:
        return cache.embeddings_hit(slot)
    as_json = as_json and req.encoding_format != "base64" and req.dimensions is None
    answer = await _create_embeddings(ctx, req, model_id, texts, progress, as_json)
    if slot is not None:
        await slot.store(answer)
    return answer


async def _create_embeddings(ctx: Context, req: EmbeddingRequest, model_id: str, texts: list[str],
                             progress: Callable[[int], None] | None, as_json: bool) -> EmbeddingList:
    limit = asyncio.Semaphore(MAX_CONCURRENT_BATCHES)
    packed = req.encoding_format == "base64" and req.dimensions is None

    async def one(start: int, batch: list[str]) -> tuple[Sequence[list[float] | RawJson | str], int | None]:
        async with limit:
            try:
                result = await _run_batch(ctx, model_id, batch, as_json)
            except InvalidRequest as exc:
                raise _length_error(exc, batch, start, model_id) from None
        vectors: Sequence[list[float] | RawJson | str] = parse_vectors(result, len(batch), as_json=as_json)
        if packed:  # in base64 now: a batch's floats (~2.5 MB) are not held until the last batch is in
            vectors = [encode_base64(vector) for vector in vectors if isinstance(vector, list)]
        usage = parse_usage(result.get("usage")) if isinstance(result, dict) else None
        if progress is not None:
            progress(len(batch))
        return vectors, usage.prompt_tokens if usage else None

    planned = list(batches(texts, embedding_model(model_id)))
    await ctx.workers.reserve(model_id, len(planned))
    done = await gather_all(one(start, batch) for start, batch in planned)
    vectors = [vector for batch_vectors, _ in done for vector in batch_vectors]
    counted = [tokens for _, tokens in done]
    prompt_tokens = sum(t for t in counted if t is not None) if all(t is not None for t in counted) else None
    answer = from_workers_embeddings(req, texts, vectors, model_id=model_id, prompt_tokens=prompt_tokens)
    ctx.record.add_usage(answer["usage"]["prompt_tokens"], 0)
    return answer
