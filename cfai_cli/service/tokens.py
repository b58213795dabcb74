"""Token counts for both front ends (POST /v1/tokenize, `cfai tokens`): exact where a tokenizer ships offline
in an installed package, otherwise the estimate of core.tokens, labelled as such. Never calls Workers AI.

Imports core, service.context, settings, errors and httpx. Exact counts for Llama 3.x and Llama 4 come from the optional
`llama-models` package (Meta's; it carries the tokenizer files and needs no network); without it, or for
any other model family, the answer is an estimate.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from cfai_cli.core.tokens import (
    MESSAGES_NOTE,
    TOKENS_PER_CONVERSATION,
    TokenizeRequest,
    TokenizeResult,
    check_tokenize,
    estimate_result,
    message_text,
    message_tokens,
    result,
    tokenizer_family,
)
from cfai_cli.errors import UpstreamError
from cfai_cli.service.context import Context, open_context
from cfai_cli.settings import Settings

# Above this many characters the counting runs in a worker thread, so a big body does not stall the proxy.
THREAD_CHARS = 100_000


@dataclass(frozen=True)
class Tokenizer:
    """An exact tokenizer: its name as reported (`tokenizer` in the answer) and a text -> count function."""

    name: str
    count: Callable[[str], int]


TokenizerLookup = Callable[[str], Tokenizer | None]


@functools.cache
def _llama(family: str) -> Tokenizer | None:
    """The Llama tokenizer that `llama-models` ships, or None if the package (or its file) is missing."""
    try:
        module = importlib.import_module(f"llama_models.{family}.tokenizer")
        model: Any = module.Tokenizer.get_instance()
    except (ImportError, OSError):
        return None
    # bos/eos off: the chat template's tokens are counted separately, and plain text has none.
    return Tokenizer(name=f"llama-models/{family}", count=lambda text: len(model.encode(text, bos=False, eos=False)))


def bundled_tokenizer(model_id: str) -> Tokenizer | None:
    """The exact tokenizer for `model_id` if an installed package carries it offline."""
    family = tokenizer_family(model_id)
    return _llama(family) if family is not None else None


def _exact_result(req: TokenizeRequest, model_id: str, tokenizer: Tokenizer) -> TokenizeResult:
    note = f"Exact: counted with the {tokenizer.name} tokenizer, without special tokens."
    if req.messages is None:
        return result(model_id, [tokenizer.count(t) for t in req.texts()], 0, method="exact",
                      tokenizer=tokenizer.name, note=note)
    counts = [message_tokens(m, tokenizer.count) for m in req.messages]
    note = (f"Exact text counts from the {tokenizer.name} tokenizer; the chat-template tokens are those of the "
            "Llama 3 template." + MESSAGES_NOTE)
    return result(model_id, counts, TOKENS_PER_CONVERSATION, method="exact", tokenizer=tokenizer.name, note=note)


def _size(req: TokenizeRequest) -> int:
    if req.messages is not None:
        return sum(len(message_text(m)) for m in req.messages)
    return sum(len(t) for t in req.texts())


async def count_tokens(ctx: Context, req: TokenizeRequest, *,
                       lookup: TokenizerLookup = bundled_tokenizer) -> TokenizeResult:
    """Token counts for `req`: exact when `lookup` finds a tokenizer for the model, else an estimate."""
    _, chain = ctx.router.chain(req.model)  # a route counts with its first target's model
    model_id = chain[0].model
    ctx.record.asked = req.model
    ctx.record.check_model(req.model, model_id)  # counting runs no model, but a key sees only its own
    check_tokenize(req)

    def work() -> TokenizeResult:
        tokenizer = lookup(model_id)
        if tokenizer is None:
            answer = estimate_result(req, model_id)
            if tokenizer_family(model_id) is not None:
                answer["note"] += " Install the llama-models package for exact counts for this model."
            return answer
        return _exact_result(req, model_id, tokenizer)

    if _size(req) > THREAD_CHARS:
        return await asyncio.to_thread(work)
    return work()


class _NoNetwork(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise UpstreamError("cfai bug: a local-only command tried to call Workers AI.", code="internal_error")


@asynccontextmanager
async def local_context(settings: Settings) -> AsyncIterator[Context]:
    """A Context for work that never reaches Workers AI (token counting): no credentials needed (it is built
    the offline way), and any upstream call fails loudly instead of going anywhere."""
    async with open_context(settings.as_offline(), transport=_NoNetwork(), image_transport=_NoNetwork()) as ctx:
        yield ctx
