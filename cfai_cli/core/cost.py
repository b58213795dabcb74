"""What a Workers AI call cost: neurons as Workers AI reported them, or estimated from published prices, and dollars.

Pure: standard library only. Workers AI bills in neurons, $0.011 per 1,000, with 10,000 free neurons a day per
account reset at 00:00 UTC (reference §10). It reports a call's neurons in a `cf-ai-neurons` response header,
and some results and streams carry `usage.neurons` (reference §1, OBSERVED). Where neither came, the call is
estimated from the catalogue's published prices (the `price` property of /ai/models/search, reference §9.1),
which are in dollars per unit: per M input/output tokens, per 512x512 tile, per step, per audio minute, per 1k
characters (Deepgram Aura's text in).
Neurons are then dollars / $0.011 * 1,000, the inverse of how Workers AI converts them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

USD_PER_NEURON = 0.011 / 1000
FREE_NEURONS_PER_DAY = 10_000
DAY = 86_400


@dataclass(frozen=True, slots=True)
class Prices:
    """A model's published prices, in USD per unit (0 where it publishes none)."""

    input_per_m: float = 0.0  # per million input (prompt) tokens
    output_per_m: float = 0.0  # per million output tokens
    cached_input_per_m: float | None = None  # per million cached input tokens, where published
    per_tile: float = 0.0  # per 512x512 image tile (output images; input tiles for flux-2, see per_input_tile)
    per_input_tile: float = 0.0  # per 512x512 input-image tile (times steps for flux-2: "per input tile, per step")
    per_step: float = 0.0  # per diffusion step
    tile_step: bool = False  # the tile prices are per tile *per step* (flux-2-dev)
    per_audio_minute: float = 0.0  # of the audio heard (speech recognition) or made (MeloTTS)
    per_k_characters: float = 0.0  # per 1,000 characters of text to speak (Deepgram Aura)

    @property
    def known(self) -> bool:
        return any((self.input_per_m, self.output_per_m, self.per_tile, self.per_input_tile, self.per_step,
                    self.per_audio_minute, self.per_k_characters))


@dataclass(frozen=True, slots=True)
class Units:
    """What one call used, as far as cfai knows it."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0  # of the input tokens, those served from the prefix cache
    tiles: int = 0  # output image tiles of 512x512
    input_tiles: int = 0
    steps: int = 0
    audio_seconds: float = 0.0
    characters: int = 0  # of text to speak


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip().lstrip("$").replace(",", ""))
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) and number >= 0 else None


_TILE = r"tile"  # compiled on first use (re's cache): not at import, where every one-shot command paid for it


def parse_prices(value: object) -> Prices:
    """The catalogue's `price` property value (a list of {unit, price, currency}) as `Prices`; entries in
    another currency, or of a unit not understood, are left out (an unknown shape prices nothing)."""
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, list):
        return Prices()
    fields: dict[str, float | bool] = {}
    for entry in value:
        if not isinstance(entry, Mapping):
            continue
        price = _number(entry.get("price"))
        unit = entry.get("unit")
        currency = entry.get("currency", "USD")
        if price is None or not isinstance(unit, str) or str(currency).upper() != "USD":
            continue
        unit = unit.lower()
        if "token" in unit:
            per = 1e6 if re.search(r"\bm\b|million", unit) else 1e3 if re.search(r"(\b|\d)k\b|thousand", unit) else 1.0
            scaled = price * (1e6 / per)  # per million
            if "cached" in unit:
                fields["cached_input_per_m"] = scaled
            elif "output" in unit:
                fields["output_per_m"] = scaled
            else:  # "per M input tokens", and "per M tokens" for embeddings
                fields["input_per_m"] = scaled
        elif "character" in unit:  # "per 1k characters input"
            per = 1e6 if re.search(r"\bm\b|million", unit) else 1e3 if re.search(r"(\b|\d)k\b|thousand", unit) else 1.0
            fields["per_k_characters"] = price * (1e3 / per)
        elif "audio" in unit or "minute" in unit:
            fields["per_audio_minute"] = price * (60.0 if "second" in unit else 1.0)
        elif re.search(_TILE, unit):
            per_step = "step" in unit
            fields["tile_step"] = bool(fields.get("tile_step")) or per_step
            fields["per_input_tile" if "input" in unit else "per_tile"] = price
        elif "step" in unit:
            fields["per_step"] = price
    return Prices(**fields)  # type: ignore[arg-type]  # keys are Prices' own fields


def estimate_usd(prices: Prices, units: Units) -> float:
    """What `units` cost at `prices`, in USD."""
    cached = min(units.cached_tokens, units.input_tokens) if prices.cached_input_per_m is not None else 0
    usd = (units.input_tokens - cached) * prices.input_per_m / 1e6 + units.output_tokens * prices.output_per_m / 1e6
    if prices.cached_input_per_m is not None:
        usd += cached * prices.cached_input_per_m / 1e6
    steps = units.steps
    tiles = units.tiles * prices.per_tile + units.input_tiles * prices.per_input_tile
    usd += tiles * max(steps, 1) if prices.tile_step else tiles
    usd += steps * prices.per_step
    usd += units.audio_seconds / 60 * prices.per_audio_minute
    usd += units.characters / 1000 * prices.per_k_characters
    return usd


def neurons_of_usd(usd: float) -> float:
    return usd / USD_PER_NEURON


def usd_of_neurons(neurons: float) -> float:
    return neurons * USD_PER_NEURON


def estimate_neurons(prices: Prices, units: Units) -> float:
    return neurons_of_usd(estimate_usd(prices, units))


def tiles_of(width: int, height: int) -> int:
    """512x512 tiles an image of width x height covers (a part tile counts whole)."""
    return max(1, math.ceil(max(width, 1) / 512)) * max(1, math.ceil(max(height, 1) / 512))


def reported_neurons(header: str | None, result: object = None) -> float | None:
    """Neurons Workers AI reported for one answer: its `cf-ai-neurons` header, else a `usage.neurons` in its
    result (or stream event); None when it reported none (or something that is not a number >= 0)."""
    if header is not None:
        number = _number(header)
        if number is not None:
            return number
    if type(result) is dict or isinstance(result, Mapping):  # a dict first: an ABC check is a Python call
        usage = result.get("usage")
        if (type(usage) is dict or isinstance(usage, Mapping)) and "neurons" in usage:
            return _number(usage.get("neurons"))
    return None


@dataclass(frozen=True, slots=True)
class Allocation:
    """One account's free daily allocation as of `now`."""

    used: float
    free: int
    resets_in: float  # seconds to the next 00:00 UTC

    @property
    def percent(self) -> float:
        return 100.0 * self.used / self.free if self.free else 0.0

    def line(self) -> str:
        """'today: 7,340 of 10,000 free neurons used (73 %), resets in 5 h 12 m'."""
        hours, minutes = divmod(int(self.resets_in // 60), 60)
        return (f"today: {self.used:,.0f} of {self.free:,} free neurons used ({self.percent:.0f} %), "
                f"resets in {hours} h {minutes} m")


def day_start(now: float) -> float:
    """The last 00:00 UTC at or before `now` (a Unix time): when the free allocation was reset."""
    return now - now % DAY


def allocation(used: float, now: float, *, free: int = FREE_NEURONS_PER_DAY) -> Allocation:
    return Allocation(used=used, free=free, resets_in=day_start(now) + DAY - now)
