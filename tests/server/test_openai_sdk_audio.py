"""The real `openai` SDK (strict response validation) on /v1/audio/*: transcriptions in every format,
translations, and speech, against the proxy in process with the offline emulator as Workers AI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import openai
import pytest

from cfai_cli.server.app import create_app
from cfai_cli.service.context import offline_transport
from tests.audio_fixtures import tone_wav
from tests.openai_schema import validate
from tests.sdk import sdk_httpx

pytestmark = pytest.mark.anyio



@pytest.fixture
def sdk(settings, api_key: str):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def open_sdk() -> AsyncIterator[openai.AsyncOpenAI]:
        # The emulator speaks the real wire shapes of every Whisper variant, MeloTTS, Aura and m2m100.
        app = create_app(settings, transport=offline_transport())
        async with app.router.lifespan_context(app), sdk_httpx.AsyncClient(
            transport=sdk_httpx.ASGITransport(app=app), base_url="http://proxy.test/v1"
        ) as http:
            yield openai.AsyncOpenAI(api_key=api_key, base_url="http://proxy.test/v1", http_client=http,
                                     max_retries=0, _strict_response_validation=True)

    return open_sdk


WAV = ("tone.wav", tone_wav(7.0), "audio/wav")


@pytest.mark.parametrize("model", ["whisper-1", "gpt-4o-mini-transcribe", "@cf/openai/whisper",
                                   "@cf/openai/whisper-tiny-en", "@cf/deepgram/nova-3"])
async def test_transcriptions_json_and_verbose(sdk, model: str) -> None:
    async with sdk() as client:
        plain = await client.audio.transcriptions.create(model=model, file=WAV)
        verbose = await client.audio.transcriptions.create(
            model=model, file=WAV, response_format="verbose_json", timestamp_granularities=["word", "segment"])
    assert plain.text.startswith("Offline speech, part 1.")
    validate(verbose.model_dump(exclude_unset=True), "CreateTranscriptionResponseVerboseJson")
    assert verbose.language == "english" and verbose.duration == 7.0
    assert verbose.segments is not None and [s.start for s in verbose.segments] == [0.0, 5.0]
    assert verbose.words is not None and verbose.words[-1].end == 7.0


@pytest.mark.parametrize(("fmt", "expected"), [
    ("text", "Offline speech, part 1. Offline speech, part 2.\n"),
    ("srt", "1\n00:00:00,000 --> 00:00:05,000\nOffline speech, part 1.\n\n"
            "2\n00:00:05,000 --> 00:00:07,000\nOffline speech, part 2.\n"),
    ("vtt", "WEBVTT\n\n00:00:00.000 --> 00:00:05.000\nOffline speech, part 1.\n\n"
            "00:00:05.000 --> 00:00:07.000\nOffline speech, part 2.\n"),
])
async def test_transcriptions_text_formats(sdk, fmt: str, expected: str) -> None:
    async with sdk() as client:
        text = await client.audio.transcriptions.create(model="whisper-1", file=WAV, response_format=fmt)
    assert text == expected


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the SDK marks translations so
async def test_translations(sdk) -> None:
    async with sdk() as client:
        english = await client.audio.translations.create(model="whisper-1", file=WAV)
        verbose = await client.audio.translations.create(model="whisper-1", file=WAV, response_format="verbose_json")
        french = await client.audio.translations.create(model="whisper-1", file=WAV, response_format="srt",
                                                        extra_body={"target_language": "fr"})
    assert english.text.startswith("Offline speech")
    assert verbose.language == "english" and verbose.segments is not None and len(verbose.segments) == 2
    assert "[fr] Offline speech, part 2." in french


@pytest.mark.parametrize(("model", "voice", "fmt", "magic", "content_type"), [
    ("tts-1", "alloy", "mp3", b"\xff\xfb", "audio/mpeg"),
    ("@cf/myshell-ai/melotts", "fr", "mp3", b"\xff\xfb", "audio/mpeg"),
    ("@cf/deepgram/aura-1", "shimmer", "wav", b"RIFF", "audio/wav"),
    ("@cf/deepgram/aura-1", "luna", "flac", b"fLaC", "audio/flac"),
])
async def test_speech(sdk, model: str, voice: str, fmt: str, magic: bytes, content_type: str) -> None:
    async with sdk() as client:
        response = await client.audio.speech.create(model=model, voice=voice, input="Hello from cfai",
                                                    response_format=fmt)  # type: ignore[arg-type]
        audio = response.content
    assert audio.startswith(magic) and len(audio) > 100
    assert response.response.headers["content-type"] == content_type


async def test_speech_errors_are_openai_errors(sdk) -> None:
    async with sdk() as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.audio.speech.create(model="@cf/myshell-ai/melotts", voice="alloy", input="Hi",
                                             response_format="opus")
    assert caught.value.body["param"] == "response_format"  # type: ignore[index]
