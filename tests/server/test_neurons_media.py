"""Estimated neurons of audio and image calls (Workers AI reports none for them): speech recognition per audio
minute heard, Aura per 1,000 characters spoken, MeloTTS per minute of audio made, images per tile and per
step with the model's own default step count. Every figure is worked out by hand from the published prices
($0.011 per 1,000 neurons) in the comments, not recomputed with cfai's code."""

from __future__ import annotations

import struct
from typing import Any

import httpx
import openai
import pytest

from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings
from cfai_cli.store.usage import UsageLog
from tests.audio_fixtures import mp3_frames, tone_wav
from tests.fake_workers import FakeWorkers, envelope, fixed
from tests.sdk import offline_sdk, sdk_httpx

pytestmark = pytest.mark.anyio

NEURONS_PER_USD = 1000 / 0.011


def neurons(response: Any) -> tuple[float, str]:
    return float(response.headers["x-cfai-neurons"]), response.headers["x-cfai-neurons-source"]


async def test_transcription_is_priced_per_audio_minute_heard(settings: Settings, api_key: str) -> None:
    async with offline_sdk(settings, api_key) as sdk:
        raw = await sdk.audio.transcriptions.with_raw_response.create(
            model="whisper-1", file=("three.wav", tone_wav(3.0), "audio/wav"))
    # whisper-1 is whisper-large-v3-turbo, $0.00051 per audio minute: 3 s = 0.05 min = $0.0000255 = 2.3182 neurons.
    assert neurons(raw) == (pytest.approx(2.318182, abs=1e-6), "estimated")
    (row,) = UsageLog(settings.database).rows(since=0)
    assert row.route == "audio/transcriptions" and row.neurons_estimated and row.neurons == pytest.approx(2.318182)


async def test_audio_of_unknown_length_is_priced_to_where_the_model_heard_its_last_word(
        settings: Settings, api_key: str) -> None:
    words = [{"word": "one", "start": 0.0, "end": 1.5}, {"word": "two", "start": 1.5, "end": 4.5}]
    fake = FakeWorkers(models={"@cf/openai/whisper": fixed(200, envelope({"text": "one two", "words": words}))})
    app = create_app(settings, transport=fake.transport())
    async with app.router.lifespan_context(app), sdk_httpx.AsyncClient(
            transport=sdk_httpx.ASGITransport(app=app), base_url="http://proxy.test/v1") as http:
        sdk = openai.AsyncOpenAI(api_key=api_key, base_url="http://proxy.test/v1", http_client=http, max_retries=0)
        raw = await sdk.audio.transcriptions.with_raw_response.create(
            model="@cf/openai/whisper", file=("talk.ogg", b"OggS" + bytes(500), "audio/ogg"))
    # An Ogg file cfai cannot measure: 4.5 s as whisper timed it, at $0.0005 per minute = $0.0000375 = 3.4091 neurons.
    assert neurons(raw) == (pytest.approx(3.409091, abs=1e-6), "estimated")


async def test_aura_is_priced_per_thousand_characters_spoken(settings: Settings, api_key: str) -> None:
    async with offline_sdk(settings, api_key) as sdk:
        raw = await sdk.audio.speech.with_raw_response.create(model="tts-1", voice="alloy", input="a" * 200)
    # tts-1 is aura-1, $0.015 per 1,000 characters: 200 characters = $0.003 = 272.7273 neurons.
    assert neurons(raw) == (pytest.approx(272.727273, abs=1e-6), "estimated")


async def test_melotts_is_priced_per_minute_of_audio_made(settings: Settings, api_key: str) -> None:
    audio = mp3_frames(100)  # 100 MPEG-1 Layer III frames of 1,152 samples at 44.1 kHz: 2.6122 s
    fake = FakeWorkers(models={"@cf/myshell-ai/melotts": fixed(200, audio, "audio/mpeg")})
    app = create_app(settings, transport=fake.transport())
    async with app.router.lifespan_context(app), sdk_httpx.AsyncClient(
            transport=sdk_httpx.ASGITransport(app=app), base_url="http://proxy.test/v1") as http:
        sdk = openai.AsyncOpenAI(api_key=api_key, base_url="http://proxy.test/v1", http_client=http, max_retries=0)
        raw = await sdk.audio.speech.with_raw_response.create(model="@cf/myshell-ai/melotts", voice="alloy",
                                                              input="hello there")
    assert raw.content == audio
    # $0.0002 per audio minute: 115,200 / 44,100 s = 0.043537 min = $0.0000087075 = 0.791589 neurons.
    assert neurons(raw) == (pytest.approx(0.791589, abs=1e-6), "estimated")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


PHOENIX = "@cf/leonardo/phoenix-1.0"  # $0.0058 per 512x512 tile + $0.00011 per step; 25 steps unless told


def phoenix_answer(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, content=_PNG_1024, headers={"content-type": "image/jpeg"})


def _png(width: int, height: int) -> bytes:
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes([200, 120, 40]) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


_PNG_1024 = _png(1024, 1024)


@pytest.mark.parametrize(("quality", "expected"), [
    # No steps asked: phoenix's own 25. 1024x1024 = 4 tiles: 4 x $0.0058 + 25 x $0.00011 = $0.02595 = 2359.0909.
    (None, 2359.090909),
    # quality "hd" sends num_steps 40: 4 x $0.0058 + 40 x $0.00011 = $0.0276 = 2509.0909 neurons.
    ("hd", 2509.090909),
])
async def test_an_image_is_priced_per_tile_and_the_models_own_default_steps(
        settings: Settings, api_key: str, quality: str | None, expected: float) -> None:
    fake = FakeWorkers(models={PHOENIX: phoenix_answer})
    app = create_app(settings, transport=fake.transport())
    async with app.router.lifespan_context(app), sdk_httpx.AsyncClient(
            transport=sdk_httpx.ASGITransport(app=app), base_url="http://proxy.test/v1") as http:
        sdk = openai.AsyncOpenAI(api_key=api_key, base_url="http://proxy.test/v1", http_client=http, max_retries=0)
        extra = {"quality": quality} if quality else {}
        raw = await sdk.images.with_raw_response.generate(model=PHOENIX, prompt="a fox", size="1024x1024",
                                                          response_format="b64_json", **extra)  # type: ignore[arg-type]
    assert png_size(_PNG_1024) == (1024, 1024)
    sent = fake.calls[0][1]
    assert ("num_steps" in sent) == (quality == "hd")
    assert neurons(raw) == (pytest.approx(expected, abs=1e-6), "estimated")
    assert expected == pytest.approx((4 * 0.0058 + (40 if quality else 25) * 0.00011) * NEURONS_PER_USD)
