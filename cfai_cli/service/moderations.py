"""Moderations for both front ends: classify each input with the guard model, side by side, in input order.

Imports core and the Context (upstream through it). One guard call per input, all charged before the first is
made; the router runs at most MAX_CONCURRENT_CALLS of a request's calls at once (service/record.py), the rest
wait their turn. A blank text is safe without a call.
"""

from __future__ import annotations

from cfai_cli.core.caps import check_moderation_inputs
from cfai_cli.core.catalog import resolve_model
from cfai_cli.core.openai.moderations import ModerationRequest, ModerationResponse
from cfai_cli.core.tokens import estimate_tokens
from cfai_cli.core.translate.moderations import (
    GuardVerdict,
    check_classifiable,
    from_guard,
    parse_guard,
    to_workers_guard,
)
from cfai_cli.service.context import Context, new_id
from cfai_cli.service.gather import gather_all


async def create_moderation(ctx: Context, req: ModerationRequest) -> ModerationResponse:
    """The OpenAI moderation object for `req`: one result per input."""
    ctx.record.asked = req.model
    model_id = resolve_model(req.model, ctx.settings.aliases)
    inputs = req.inputs()
    check_moderation_inputs(len(inputs))
    for item in inputs:
        check_classifiable(item)

    async def one(text: str) -> GuardVerdict:
        result = await ctx.workers.run(model_id, to_workers_guard(text))
        verdict = parse_guard(result, model=model_id)
        ctx.record.add_usage(verdict.prompt_tokens if verdict.prompt_tokens is not None else estimate_tokens(text),
                             verdict.completion_tokens or 0)
        return verdict

    async def blank() -> GuardVerdict:
        return GuardVerdict(safe=True)

    await ctx.workers.reserve(model_id, sum(1 for item in inputs if item.text.strip()))
    verdicts = await gather_all(one(item.text) if item.text.strip() else blank() for item in inputs)
    return from_guard(verdicts, model=model_id, id=new_id("modr"))
