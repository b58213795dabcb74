"""What the emulator bills: `cf-ai-neurons` on some answers and not others, as Workers AI does (reference §1).

Imports only the standard library and the emulator's catalogue. The rule is fixed, so offline figures
are reproducible and both of cfai's paths run: a non-streamed text-generation answer (either dialect, and the
Responses shape) carries `cf-ai-neurons`, its tokens at the catalogue's own `price` converted at $0.011 per
1,000 neurons (rounded to 6 decimals); streams and every other task (embeddings, images, audio, rerank,
moderation) report nothing, so cfai estimates them from the same prices. A model priced at $0 bills 0.
"""

from __future__ import annotations

import json
from typing import Any

from cfai_cli.emulator.asgi import Response, StreamingResponse
from cfai_cli.emulator.catalogue import CATALOGUE

USD_PER_NEURON = 0.011 / 1000


def _token_prices(item: dict[str, Any]) -> tuple[float, float] | None:
    for prop in item["properties"]:
        if prop["property_id"] == "price":
            units = {entry["unit"]: float(entry["price"]) for entry in prop["value"]}
            if "per M input tokens" in units:
                return units["per M input tokens"], units.get("per M output tokens", 0.0)
    return None


TOKEN_PRICES: dict[str, tuple[float, float]] = {
    item["name"]: prices for item in CATALOGUE if (prices := _token_prices(item)) is not None}


def neurons_for(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """The neurons the emulator bills a text answer of `model`, or None when the catalogue has no token price."""
    prices = TOKEN_PRICES.get(model)
    if prices is None:
        return None
    usd = prompt_tokens * prices[0] / 1e6 + completion_tokens * prices[1] / 1e6
    return round(usd / USD_PER_NEURON, 6)


def bill(model: str, response: Response) -> Response:
    """`response` with `cf-ai-neurons` when it is a successful, non-streamed text answer with usage."""
    if isinstance(response, StreamingResponse) or response.status_code != 200:
        return response
    try:
        result = json.loads(bytes(response.body))["result"]
        usage = result["usage"]
        prompt = int(usage.get("prompt_tokens", usage.get("input_tokens", 0)))
        completion = int(usage.get("completion_tokens", usage.get("output_tokens", 0)))
    except (ValueError, KeyError, TypeError, AttributeError):
        return response
    neurons = neurons_for(model, prompt, completion)
    if neurons is not None:
        response.headers["cf-ai-neurons"] = repr(neurons)
    return response
