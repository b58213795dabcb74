"""core.cost: neurons reported or estimated from the catalogue's published prices, and dollars."""

from __future__ import annotations

import pytest

from cfai_cli.core.catalog import PUBLISHED_PRICES
from cfai_cli.core.cost import (
    Prices,
    Units,
    allocation,
    day_start,
    estimate_neurons,
    estimate_usd,
    neurons_of_usd,
    parse_prices,
    reported_neurons,
    tiles_of,
    usd_of_neurons,
)


def _price(unit: str, price: float, currency: str = "USD") -> dict[str, object]:
    return {"unit": unit, "price": price, "currency": currency}


def test_token_prices_as_the_catalogue_publishes_them() -> None:
    # The reference's §9.1 example item (gpt-oss-120b).
    prices = parse_prices([_price("per M input tokens", 0.35), _price("per M output tokens", 0.75)])
    assert prices == Prices(input_per_m=0.35, output_per_m=0.75)
    # 1M in + 1M out = $1.10 = 100,000 neurons at $0.011 per 1,000.
    assert estimate_neurons(prices, Units(input_tokens=1_000_000, output_tokens=1_000_000)) == pytest.approx(100_000)
    assert estimate_neurons(prices, Units(input_tokens=1000, output_tokens=500)) == pytest.approx(
        (1000 * 0.35 + 500 * 0.75) / 1e6 / 0.011 * 1000)


def test_cached_input_tokens_have_their_own_price_where_published() -> None:
    prices = parse_prices([_price("per M input tokens", 0.95), _price("per M cached input tokens", 0.16),
                           _price("per M output tokens", 4.0)])
    assert prices.cached_input_per_m == 0.16
    usd = estimate_usd(prices, Units(input_tokens=1000, cached_tokens=600, output_tokens=10))
    assert usd == pytest.approx((400 * 0.95 + 600 * 0.16 + 10 * 4.0) / 1e6)
    # Without a cached price, cached tokens cost as any input token.
    plain = Prices(input_per_m=0.95)
    assert estimate_usd(plain, Units(input_tokens=1000, cached_tokens=600)) == pytest.approx(1000 * 0.95 / 1e6)


def test_embedding_price_per_m_tokens_is_an_input_price() -> None:
    assert parse_prices([_price("per M tokens", 0.067)]) == Prices(input_per_m=0.067)
    assert parse_prices([_price("per 1k tokens", 0.001)]).input_per_m == pytest.approx(1.0)


def test_image_prices_per_tile_and_step() -> None:
    # flux-1-schnell: $0.0000528 per 512x512 tile + $0.0001056 per step (reference §5).
    prices = parse_prices([_price("per 512 by 512 tile", 0.0000528), _price("per step", 0.0001056)])
    assert prices == Prices(per_tile=0.0000528, per_step=0.0001056)
    units = Units(tiles=tiles_of(1024, 1024), steps=4)
    assert units.tiles == 4
    assert estimate_usd(prices, units) == pytest.approx(4 * 0.0000528 + 4 * 0.0001056)


def test_flux_2_prices_are_per_tile_per_step() -> None:
    prices = parse_prices([_price("per input 512x512 tile, per step", 0.000413),
                           _price("per output 512x512 tile, per step", 0.000825)])
    assert prices.tile_step and prices.per_input_tile == 0.000413 and prices.per_tile == 0.000825
    usd = estimate_usd(prices, Units(tiles=2, input_tiles=1, steps=25))
    assert usd == pytest.approx((2 * 0.000825 + 0.000413) * 25)
    assert prices == PUBLISHED_PRICES["@cf/black-forest-labs/flux-2-dev"]


def test_audio_price_per_minute() -> None:
    prices = parse_prices([_price("per audio minute", 0.0052)])
    assert prices == Prices(per_audio_minute=0.0052)
    assert estimate_usd(prices, Units(audio_seconds=90)) == pytest.approx(0.0078)


def test_speech_prices_per_thousand_characters_and_per_audio_minute() -> None:
    # aura-1: "$0.015 per 1k characters input" (pricing page): 2,500 characters = $0.0375 = 3,409.09 neurons.
    aura = parse_prices([_price("per 1k characters input", 0.015)])
    assert aura == Prices(per_k_characters=0.015) == PUBLISHED_PRICES["@cf/deepgram/aura-1"]
    assert estimate_neurons(aura, Units(characters=2500, audio_seconds=30)) == pytest.approx(3409.090909)
    assert parse_prices([_price("per M characters", 30.0)]).per_k_characters == pytest.approx(0.03)
    # MeloTTS: $0.0002 per audio minute made: 90 s = $0.0003 = 27.27 neurons; characters cost it nothing.
    melo = PUBLISHED_PRICES["@cf/myshell-ai/melotts"]
    assert estimate_neurons(melo, Units(characters=2500, audio_seconds=90)) == pytest.approx(27.272727)
    # whisper: $0.0005 per audio minute heard: 2 min = $0.001 = 90.91 neurons.
    whisper = PUBLISHED_PRICES["@cf/openai/whisper"]
    assert estimate_neurons(whisper, Units(audio_seconds=120)) == pytest.approx(90.909091)


@pytest.mark.parametrize(("model", "steps"), [
    ("@cf/black-forest-labs/flux-1-schnell", 4), ("@cf/stabilityai/stable-diffusion-xl-base-1.0", 20),
    ("@cf/leonardo/phoenix-1.0", 25), ("@cf/black-forest-labs/flux-2-klein-4b", 4),
    ("@cf/leonardo/lucid-origin", None), ("@cf/black-forest-labs/flux-2-dev", None)])
def test_image_models_default_step_counts_from_the_reference(model: str, steps: int | None) -> None:
    from cfai_cli.core.translate.images import image_family

    assert image_family(model).default_steps == steps


def test_a_transcripts_length_is_its_duration_else_where_its_last_word_ends() -> None:
    from cfai_cli.core.workers.audio import Segment, Transcript, Word

    assert Transcript("x", duration=12.5, words=(Word("x", 0, 99.0),)).seconds() == 12.5
    assert Transcript("x", words=(Word("a", 0, 1.0), Word("b", 1.0, 4.5))).seconds() == 4.5
    assert Transcript("x", segments=(Segment(0, 7.25, "x", words=(Word("x", 0, 7.0),)),)).seconds() == 7.25
    assert Transcript("").seconds() == 0.0


@pytest.mark.parametrize("value", [None, "0.35", 3, {"unit": "per M input tokens"}, [_price("per M input tokens", -1)],
                                   [_price("per M input tokens", 1.0, "EUR")], [_price("per fortnight", 2.0)],
                                   ["per M input tokens"], [{"unit": 5, "price": 1}]])
def test_shapes_not_understood_price_nothing(value: object) -> None:
    assert not parse_prices(value).known


def test_a_single_price_object_and_string_prices_are_read() -> None:
    assert parse_prices({"unit": "per M output tokens", "price": "0.75"}) == Prices(output_per_m=0.75)


def test_report_from_the_header_or_the_result() -> None:
    assert reported_neurons("12.5") == 12.5
    assert reported_neurons(None, {"response": "x", "usage": {"prompt_tokens": 3, "neurons": 4.25}}) == 4.25
    assert reported_neurons("7", {"usage": {"neurons": 4}}) == 7.0  # the header is the bill
    assert reported_neurons("junk", {"usage": {"neurons": 4}}) == 4.0
    assert reported_neurons(None, {"usage": {"prompt_tokens": 3}}) is None
    assert reported_neurons(None, "text") is None
    assert reported_neurons("-3") is None and reported_neurons("nan") is None
    assert reported_neurons(None, {"usage": {"neurons": True}}) is None


def test_dollars_and_neurons() -> None:
    assert usd_of_neurons(1000) == pytest.approx(0.011)
    assert neurons_of_usd(0.011) == pytest.approx(1000)


def test_free_allocation_line() -> None:
    now = 1_780_000_000.0 + 0  # some instant
    start = day_start(now)
    assert start % 86_400 == 0 and 0 <= now - start < 86_400
    at = start + 86_400 - (5 * 3600 + 12 * 60 + 30)  # 5 h 12 m 30 s before midnight UTC
    gauge = allocation(7340, at)
    assert gauge.line() == "today: 7,340 of 10,000 free neurons used (73 %), resets in 5 h 12 m"
    assert allocation(12_500, start).percent == 125.0


def test_published_prices_are_known() -> None:
    assert all(prices.known for prices in PUBLISHED_PRICES.values())
