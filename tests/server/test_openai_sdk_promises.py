"""OpenAI model names keep their promises: the real `openai` SDK's ordinary calls against the offline proxy.

Vision with gpt-4o / gpt-4o-mini / gpt-5 (and their dated names, in chat and Responses), every OpenAI image
size with distinct images for `n`, every speech format with tts-1 (real magic bytes), shortened embeddings
(length and unit norm, float and base64). What served each request shows in `x-cfai-model` and the usage log.
"""

from __future__ import annotations

import base64
import io
import math
import struct
import wave
from typing import Any

import openai
import pytest

from cfai_cli.core.translate.images import sniff_image
from cfai_cli.emulator.images import png
from cfai_cli.settings import Settings
from cfai_cli.store.usage import UsageLog
from tests.sdk import offline_sdk

pytestmark = pytest.mark.anyio


SCOUT = "@cf/meta/llama-4-scout-17b-16e-instruct"
MISTRAL = "@cf/mistralai/mistral-small-3.1-24b-instruct"
GEMMA = "@cf/google/gemma-4-26b-a4b-it"
OSS_120B = "@cf/openai/gpt-oss-120b"
KLEIN_4B = "@cf/black-forest-labs/flux-2-klein-4b"
KLEIN_9B = "@cf/black-forest-labs/flux-2-klein-9b"
PICTURE = "data:image/png;base64," + base64.b64encode(png(16, 16, b"pic")).decode()


def with_image(text: str = "What is in this picture?") -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": text},
                                         {"type": "image_url", "image_url": {"url": PICTURE}}]}]


# ---- vision ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "served"), [
    ("gpt-4o", SCOUT),
    ("gpt-4o-2024-08-06", SCOUT),
    ("chatgpt-4o-latest", SCOUT),
    ("gpt-4-turbo", SCOUT),
    ("gpt-4o-mini", MISTRAL),
    ("gpt-4o-mini-2024-07-18", MISTRAL),
    ("gpt-4.1-nano", MISTRAL),
    ("gpt-5", GEMMA),
    ("gpt-5.1-codex-max", GEMMA),
    ("gpt-5-mini", GEMMA),
    ("o3-pro", GEMMA),
])
async def test_chat_with_an_image(settings: Settings, api_key: str, model: str, served: str) -> None:
    async with offline_sdk(settings, api_key) as client:
        raw = await client.chat.completions.with_raw_response.create(model=model, messages=with_image(),  # type: ignore[arg-type]
                                                                     max_tokens=50)
    completion = raw.parse()
    assert raw.headers["x-cfai-model"] == served and completion.model == served
    assert "You sent an image" in (completion.choices[0].message.content or "")


async def test_text_only_requests_keep_the_primary_model(settings: Settings, api_key: str) -> None:
    async with offline_sdk(settings, api_key) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-5", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-cfai-model"] == OSS_120B


async def test_streamed_vision_and_the_usage_log(settings: Settings, api_key: str) -> None:
    async with offline_sdk(settings, api_key) as client:
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=with_image(),  # type: ignore[arg-type]
                                                      stream=True)
        chunks = [chunk async for chunk in stream]
        await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert {chunk.model for chunk in chunks} == {MISTRAL}
    assert "You sent an image" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    rows = UsageLog(settings.database).rows(since=0)  # flushed at shutdown
    assert [(r.model, r.upstream_model) for r in rows] == [("gpt-4o-mini", MISTRAL),
                                                           ("gpt-4o-mini", "@cf/meta/llama-3.1-8b-instruct-fast")]


async def test_an_explicit_id_is_never_swapped(settings: Settings, api_key: str) -> None:
    async with offline_sdk(settings, api_key) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(model="@cf/meta/llama-3.1-8b-instruct-fast",
                                                 messages=with_image())  # type: ignore[arg-type]
    assert "does not accept images" in str(refused.value)


@pytest.mark.parametrize(("model", "served"), [("gpt-5-mini", GEMMA), ("gpt-4o", SCOUT),
                                               ("gpt-4o-mini-2024-07-18", MISTRAL)])
async def test_responses_with_an_image(settings: Settings, api_key: str, model: str, served: str) -> None:
    content = [{"type": "input_text", "text": "Describe it"}, {"type": "input_image", "image_url": PICTURE}]
    async with offline_sdk(settings, api_key) as client:
        raw = await client.responses.with_raw_response.create(
            model=model, input=[{"role": "user", "content": content}])  # type: ignore[list-item]
        async with client.responses.stream(model=model, input=[{"role": "user", "content": content}]) as stream:  # type: ignore[list-item]
            streamed = await stream.get_final_response()
    response = raw.parse()
    assert raw.headers["x-cfai-model"] == served and response.model == served and streamed.model == served
    assert "You sent an image" in response.output_text and "You sent an image" in streamed.output_text


# ---- images ------------------------------------------------------------------------------------------------


async def test_dall_e_3_makes_the_size_asked_n_distinct_images(settings: Settings, api_key: str) -> None:
    async with offline_sdk(settings, api_key) as client:
        raw = await client.images.with_raw_response.generate(model="dall-e-3", prompt="a red fox in snow",
                                                             size="1792x1024", n=2)
    result = raw.parse()
    pictures = [base64.b64decode(d.b64_json or "") for d in result.data]
    assert [(sniff_image(p).width, sniff_image(p).height) for p in pictures] == [(1792, 1024)] * 2
    assert pictures[0] != pictures[1]  # distinct seeds
    assert raw.headers["x-cfai-model"] == KLEIN_4B and result.output_format == "png"


@pytest.mark.parametrize(("model", "size"), [
    ("dall-e-3", "1024x1024"), ("dall-e-3", "1024x1792"), ("gpt-image-1", "1536x1024"),
    ("gpt-image-1", "1024x1536"), ("gpt-image-1-mini", "1024x1024"), ("gpt-image-1.5", "1536x1024"),
    ("dall-e-2", "256x256"), ("dall-e-2", "512x512"), ("dall-e-2", "1024x1024"),
])
async def test_every_openai_size(settings: Settings, api_key: str, model: str, size: str) -> None:
    async with offline_sdk(settings, api_key) as client:
        result = await client.images.generate(model=model, prompt="a lighthouse", size=size)  # type: ignore[arg-type]
    info = sniff_image(base64.b64decode(result.data[0].b64_json or ""))
    assert f"{info.width}x{info.height}" == size


async def test_no_size_is_openais_default_and_hd_picks_the_larger_model(settings: Settings, api_key: str) -> None:
    async with offline_sdk(settings, api_key) as client:
        plain = await client.images.with_raw_response.generate(model="dall-e-3", prompt="a cat")
        hd = await client.images.with_raw_response.generate(model="dall-e-3", prompt="a cat", quality="hd",
                                                            size="1024x1792")
        high = await client.images.with_raw_response.generate(model="gpt-image-1", prompt="a cat", quality="high")
        pinned = await client.images.with_raw_response.generate(model=KLEIN_4B, prompt="a cat", quality="hd")
    assert plain.parse().size == "1024x1024" and plain.headers["x-cfai-model"] == KLEIN_4B
    assert hd.headers["x-cfai-model"] == KLEIN_9B and high.headers["x-cfai-model"] == KLEIN_9B
    assert sniff_image(base64.b64decode(hd.parse().data[0].b64_json or "")).height == 1792
    assert pinned.headers["x-cfai-model"] == KLEIN_4B  # an explicit id is kept


# ---- speech ------------------------------------------------------------------------------------------------


def _is_mpeg(audio: bytes) -> bool:
    return audio[:3] == b"ID3" or (audio[0] == 0xFF and audio[1] & 0xE0 == 0xE0)


def _wav_header(audio: bytes) -> tuple[int, int, int]:
    with wave.open(io.BytesIO(audio)) as w:
        return w.getnchannels(), w.getsampwidth(), w.getframerate()


@pytest.mark.parametrize(("model", "fmt", "content_type"), [
    ("tts-1", "mp3", "audio/mpeg"), ("tts-1", "opus", "audio/opus"), ("tts-1", "aac", "audio/aac"),
    ("tts-1", "flac", "audio/flac"), ("tts-1", "wav", "audio/wav"), ("tts-1", "pcm", "audio/pcm"),
    ("tts-1-hd", "wav", "audio/wav"), ("gpt-4o-mini-tts", "flac", "audio/flac"),
])
async def test_every_speech_format(settings: Settings, api_key: str, model: str, fmt: str,
                                   content_type: str) -> None:
    async with offline_sdk(settings, api_key) as client:
        response = await client.audio.speech.create(model=model, voice="alloy", input="Hello from cfai",
                                                    response_format=fmt)  # type: ignore[arg-type]
        audio = response.content
    assert response.response.headers["content-type"] == content_type
    assert response.response.headers["x-cfai-model"] == "@cf/deepgram/aura-1"
    checks = {
        "mp3": lambda: _is_mpeg(audio),
        "opus": lambda: audio[:4] == b"OggS" and audio[28:36] == b"OpusHead",
        "aac": lambda: audio[0] == 0xFF and audio[1] & 0xF6 == 0xF0,  # ADTS sync, layer 0
        "flac": lambda: audio[:4] == b"fLaC" and audio[4] & 0x7F == 0,  # STREAMINFO first
        "wav": lambda: audio[:4] == b"RIFF" and audio[8:12] == b"WAVE" and _wav_header(audio) == (1, 2, 24000),
        "pcm": lambda: audio[:4] not in (b"RIFF", b"OggS", b"fLaC") and len(audio) % 2 == 0 and not any(audio),
    }
    assert checks[fmt](), audio[:40]
    assert len(audio) > 100


async def test_openai_voices_map_to_distinct_aura_speakers(settings: Settings, api_key: str) -> None:
    from cfai_cli.core.translate.speech import AURA_1_SPEAKERS, AURA_VOICES

    classic = ["alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse"]
    assert len({AURA_VOICES[v] for v in classic}) == len(classic)
    assert set(AURA_VOICES.values()) <= set(AURA_1_SPEAKERS)
    async with offline_sdk(settings, api_key) as client:
        with pytest.raises(openai.BadRequestError) as unknown:
            await client.audio.speech.create(model="tts-1", voice="klingon", input="Hi")  # type: ignore[arg-type]
    assert unknown.value.body["param"] == "voice"  # type: ignore[index]


# ---- embeddings --------------------------------------------------------------------------------------------


def _norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


@pytest.mark.parametrize("model", ["text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002",
                                   "@cf/qwen/qwen3-embedding-0.6b", "@cf/google/embeddinggemma-300m"])
async def test_shortened_embeddings(settings: Settings, api_key: str, model: str) -> None:
    # Not strict: the SDK's strict mode types vectors as float lists even when it asks for base64 (README).
    async with offline_sdk(settings, api_key, strict=False) as client:
        floats = await client.embeddings.create(model=model, input=["a cat", "a dog"], dimensions=256,
                                                encoding_format="float")
        default = await client.embeddings.create(model=model, input="a cat", dimensions=256)  # SDK asks base64
        full = await client.embeddings.create(model=model, input="a cat", encoding_format="float")
    vectors = [d.embedding for d in floats.data]
    assert [len(v) for v in vectors] == [256, 256]
    assert all(_norm(v) == pytest.approx(1.0, abs=1e-6) for v in vectors)
    assert default.data[0].embedding == pytest.approx(vectors[0], abs=1e-6)  # base64 float32 round trip
    head = full.data[0].embedding[:256]
    assert vectors[0] == pytest.approx([x / _norm(head) for x in head], abs=1e-9)  # prefix, re-normalised


async def test_more_dimensions_than_the_model_has_is_a_400_naming_its_size(settings: Settings,
                                                                         api_key: str) -> None:
    async with offline_sdk(settings, api_key) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.embeddings.create(model="text-embedding-3-large", input="x", dimensions=3072)
    assert refused.value.body["param"] == "dimensions" and "1024" in refused.value.body["message"]  # type: ignore[index]


def test_base64_vectors_are_little_endian_float32() -> None:
    """What the SDK decodes above: four bytes a value (a shortened vector stays a whole number of floats)."""
    from cfai_cli.core.translate.embeddings import encode_base64, shorten

    raw = base64.b64decode(encode_base64(shorten([3.0, 4.0, 12.0], 2)))
    assert struct.unpack("<2f", raw) == pytest.approx((0.6, 0.8))
