"""A request's neurons when Workers AI reported none: estimated from published prices, once, at its end.

Imports core and service (the record, the cached catalogue). The clients add every neuron count Workers AI
reports to the request's record (upstream.workers); a request whose Workers AI calls reported none is
estimated here from what it used (tokens, image tiles and steps, audio seconds, characters spoken) at the
model's published prices: the live catalogue's `price` when the catalogue was already fetched (it is never
fetched only to price a call: that would add an upstream round trip to a request), else core.catalog's table
of the reference's prices. A model with no known price stays unpriced (None). docs/cost.md says how close
the estimates are.
Before a request's first call, `plan_chat` and `planned_neurons` give what a budget holds for a call of a model
whose cost per call is not yet known (store.budgets): its prompt counted, its answer at most
core.budgets.DEFAULT_OUTPUT_TOKENS (or its own smaller max_tokens), at published prices.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cfai_cli.core.catalog import PUBLISHED_PRICES
from cfai_cli.core.cost import Prices, Units, estimate_neurons
from cfai_cli.service.catalogue_cache import cached_prices
from cfai_cli.service.record import RequestRecord

if TYPE_CHECKING:  # the chat models are not loaded by the proxy's middleware, which imports this module at start
    from cfai_cli.core.openai.chat import ChatCompletionRequest


def prices_for(cache: dict[str, Any], model_id: str) -> Prices | None:
    """The live catalogue's prices for `model_id` if cached, else the published table's, else None."""
    return cached_prices(cache, model_id) or PUBLISHED_PRICES.get(model_id)


def settle(record: RequestRecord, cache: dict[str, Any]) -> None:
    """Estimate `record`'s neurons if its Workers AI calls reported none (and mark them estimated)."""
    if record.neurons is not None or not record.calls or record.account is None or record.model is None:
        return
    prices = prices_for(cache, record.model)
    if prices is None:
        return
    units = Units(input_tokens=record.prompt_tokens, output_tokens=record.completion_tokens, tiles=record.tiles,
                  input_tiles=record.input_tiles, steps=record.steps, audio_seconds=record.audio_seconds,
                  characters=record.characters)
    record.neurons = estimate_neurons(prices, units)
    record.neurons_estimated = True


def plan_chat(record: RequestRecord, req: ChatCompletionRequest) -> None:
    """What one call of `req` is expected to use, for its budget's hold (only a budgeted request pays for counting)."""
    if record.budget is not None and record.planned is None:
        from cfai_cli.core.budgets import DEFAULT_OUTPUT_TOKENS  # budgets' module: only a budgeted request
        from cfai_cli.core.tokens import estimate_message

        limit = req.token_limit()
        output = DEFAULT_OUTPUT_TOKENS if limit is None else min(limit, DEFAULT_OUTPUT_TOKENS)
        record.planned = Units(input_tokens=sum(estimate_message(m) for m in req.messages), output_tokens=output)


def planned_neurons(record: RequestRecord, model: str, cache: dict[str, Any]) -> float:
    """One call's estimated neurons from what the request plans to use (0 where unknown or unpriced)."""
    prices = prices_for(cache, model)
    return 0.0 if prices is None or record.planned is None else estimate_neurons(prices, record.planned)
