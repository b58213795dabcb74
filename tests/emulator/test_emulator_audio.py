"""The emulator's audio models over HTTP, through cfai's own client: each Whisper variant's input encoding
(raw bytes, byte array, base64) and output shape, nova-3, MeloTTS, Aura's encodings and m2m100."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from cfai_cli.core.workers.audio import parse_transcript
from cfai_cli.emulator import create_emulator_app
from cfai_cli.errors import InvalidRequest
from cfai_cli.upstream.workers import WorkersAIClient
from tests.audio_fixtures import tone_wav, wav_seconds

pytestmark = pytest.mark.anyio
WAV = tone_wav(6.0)


@pytest.fixture
async def client() -> Any:
    workers = WorkersAIClient(account_id="offline", api_token="t", api_base="http://offline.cfai.invalid/client/v4",
                              timeout=5, max_retries=0, transport=httpx.ASGITransport(app=create_emulator_app()))
    yield workers
    await workers.aclose()


@pytest.mark.parametrize("model", ["@cf/openai/whisper", "@cf/openai/whisper-tiny-en"])
async def test_whisper_takes_raw_bytes_or_a_byte_array(client: WorkersAIClient, model: str) -> None:
    content, _, raw = await client.run_raw(model, content=WAV)
    assert content is None and set(raw) == {"text", "word_count", "words", "vtt"}
    array = await client.run(model, {"audio": list(tone_wav(6.0))})
    assert array == raw
    t = parse_transcript(raw)
    assert t.words[-1].end == 6.0 and raw["vtt"].startswith("WEBVTT\n\n00:00:00.000 --> 00:00:05.000")


async def test_turbo_takes_base64_only(client: WorkersAIClient) -> None:
    result = await client.run("@cf/openai/whisper-large-v3-turbo",
                              {"audio": base64.b64encode(WAV).decode(), "language": "fr"})
    assert result["transcription_info"]["language"] == "fr" and result["transcription_info"]["duration"] == 6.0
    assert [s["end"] for s in result["segments"]] == [5.0, 6.0] and result["segments"][0]["words"]
    with pytest.raises(InvalidRequest, match="must be string"):
        await client.run("@cf/openai/whisper-large-v3-turbo", {"audio": [1, 2, 3]})
    with pytest.raises(InvalidRequest, match="5006"):
        await client.run_raw("@cf/openai/whisper-large-v3-turbo", content=WAV)  # raw bytes are not JSON


async def test_nova3_answers_deepgrams_shape(client: WorkersAIClient) -> None:
    _, _, result = await client.run_raw("@cf/deepgram/nova-3", content=WAV, content_type="audio/wav",
                                        params={"detect_language": "true"})
    channel = result["results"]["channels"][0]
    assert channel["detected_language"] == "en" and channel["alternatives"][0]["transcript"].startswith("Offline")


async def test_tts_models(client: WorkersAIClient) -> None:
    melo = await client.run("@cf/myshell-ai/melotts", {"prompt": "hello", "lang": "en"})
    assert base64.b64decode(melo["audio"])[:2] == b"\xff\xfb"
    expected = {"mp3": ("audio/mpeg", b"\xff\xfb"), "flac": ("audio/flac", b"fLaC"), "opus": ("audio/ogg", b"OggS")}
    for encoding, (content_type, magic) in expected.items():
        container = {"container": "ogg"} if encoding == "opus" else {}
        audio, kind, _ = await client.run_raw("@cf/deepgram/aura-1",
                                              json_body={"text": "hi", "encoding": encoding, **container})
        assert kind == content_type and audio is not None and audio.startswith(magic)
    wav, kind, _ = await client.run_raw("@cf/deepgram/aura-1", json_body={
        "text": "one two three", "encoding": "linear16", "container": "wav", "sample_rate": 24000})
    assert kind == "audio/wav" and wav is not None and wav_seconds(wav) == pytest.approx(1.05, abs=0.001)
    with pytest.raises(InvalidRequest):
        await client.run_raw("@cf/deepgram/aura-1", json_body={"speaker": "luna"})


async def test_m2m100(client: WorkersAIClient) -> None:
    assert await client.run("@cf/meta/m2m100-1.2b", {"text": "Hello", "target_lang": "es"}) == {
        "translated_text": "[es] Hello"}


async def test_json_models_still_refuse_raw_bodies(client: WorkersAIClient) -> None:
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        await client.run_raw("@cf/meta/llama-3.3-70b-instruct-fp8-fast", content=WAV)
