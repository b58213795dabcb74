"""Rerank for both front ends: validate, split into upstream batches, run them side by side, merge by score.

Imports core, upstream (through Context), errors. Each batch's ids are its own; they are turned back into
the caller's indices here, and `top_n` is applied once, after every score is in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from cfai_cli.core.caps import MAX_RERANK_CALLS_AT_ONCE
from cfai_cli.core.catalog import resolve_model
from cfai_cli.core.openai.rerank import RerankRequest, RerankResponse
from cfai_cli.core.translate.rerank import (
    batches,
    check_request,
    from_workers_rerank,
    merge,
    normalise,
    parse_scores,
    rerank_model,
    to_workers_rerank,
)
from cfai_cli.core.workers.chat import parse_usage
from cfai_cli.service.context import Context
from cfai_cli.service.gather import gather_all


async def rerank(ctx: Context, req: RerankRequest, *, api_version: str = "2",
                 progress: Callable[[int], None] | None = None) -> RerankResponse:
    """The rerank answer for `req`; `progress(n)` is told each time n more documents are scored."""
    ctx.record.asked = req.model
    model_id = resolve_model(req.model, ctx.settings.aliases)
    spec = rerank_model(model_id)
    texts = check_request(req)
    limit = asyncio.Semaphore(MAX_RERANK_CALLS_AT_ONCE)

    async def one(start: int, count: int) -> tuple[list[tuple[int, float]], int | None]:
        async with limit:
            result = await ctx.workers.run(model_id, to_workers_rerank(req.query, texts[start : start + count]))
        scored = [(start + index, score) for index, score in parse_scores(result, count)]
        usage = parse_usage(result.get("usage")) if isinstance(result, dict) else None
        if progress is not None:
            progress(count)
        return scored, usage.prompt_tokens if usage else None

    planned = batches(len(texts), spec)
    await ctx.workers.reserve(model_id, len(planned))
    done = await gather_all(one(start, count) for start, count in planned)
    scored = [pair for batch, _ in done for pair in batch]
    scores = normalise([score for _, score in scored])
    ranked = merge(zip((index for index, _ in scored), scores, strict=True), req.top_n)
    counted = [tokens for _, tokens in done]
    tokens = sum(t for t in counted if t is not None) if all(t is not None for t in counted) else None
    answer = from_workers_rerank(req, texts, ranked, id=ctx.ids("rerank"), model_id=model_id,
                                 api_version=api_version, calls=len(planned), tokens=tokens)
    ctx.record.add_usage(answer["usage"]["total_tokens"], 0)
    return answer
