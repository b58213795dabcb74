"""/v1/audio/* through the proxy against a fake Workers AI: each Whisper variant's input encoding and output
shape, WAV chunking with offsets, m2m100 translation, MeloTTS (JSON and raw) and Aura, limits and errors."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import httpx
import pytest

from cfai_cli.server.app import create_app
from tests.audio_fixtures import FAKE_MP3, mp3_frames, tone_wav, wav_seconds
from tests.fake_workers import FakeWorkers, envelope, error_envelope, fixed
from tests.openai_schema import validate

pytestmark = pytest.mark.anyio
TURBO = "@cf/openai/whisper-large-v3-turbo"


def turbo(language: str = "en") -> Any:
    """whisper-large-v3-turbo: insists on base64 audio; one segment over each call's whole audio."""
    def handle(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        if not isinstance(body.get("audio"), str):
            return httpx.Response(400, json=error_envelope(5006, "AiError: Bad input: '/audio' must be string"))
        seconds = wav_seconds(base64.b64decode(body["audio"]))
        text = "Translated." if body.get("task") == "translate" else "Hello there."
        return httpx.Response(200, json=envelope({
            "transcription_info": {"language": body.get("language", language), "duration": seconds},
            "text": text, "word_count": 2, "vtt": "WEBVTT\n\n",
            "segments": [{"start": 0.0, "end": seconds, "text": " " + text, "temperature": 0.0, "avg_logprob": -0.2,
                          "compression_ratio": 1.1, "no_speech_prob": 0.01,
                          "words": [{"word": " Hello", "start": 0.0, "end": seconds / 2},
                                    {"word": " there.", "start": seconds / 2, "end": seconds}]}]}))
    return handle


def raw_whisper(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
    assert request.headers["content-type"] == "application/octet-stream" and request.content[:4] == b"RIFF"
    return httpx.Response(200, json=envelope({
        "text": "It is a good day", "word_count": 5,
        "words": [{"word": w, "start": i * 0.2, "end": i * 0.2 + 0.2}
                  for i, w in enumerate(["It", "is", "a", "good", "day"])],
        "vtt": "WEBVTT\n\n00:00.000 --> 00:01.000\nIt is a good day\n\n"}))


def nova(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
    assert request.headers["content-type"] == "audio/wav" and request.url.params["detect_language"] == "true"
    return httpx.Response(200, json=envelope({"results": {"channels": [{"detected_language": "de", "alternatives": [
        {"transcript": "Guten Tag", "words": [{"word": "guten", "start": 0.1, "end": 0.4},
                                               {"word": "tag", "start": 0.4, "end": 0.8}]}]}]}}))


def m2m100(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json=envelope({"translated_text": f"{body['target_lang']}({body['source_lang']}):"
                                                                  f"{body['text'].strip()}"}))


async def post_audio(client: httpx.AsyncClient, path: str = "/v1/audio/transcriptions", *, audio: bytes | None = None,
                     filename: str = "a.wav", **fields: Any) -> httpx.Response:
    data = {"model": "whisper-1", **fields}
    return await client.post(path, data=data, files={"file": (filename, audio or tone_wav(1.0), "audio/wav")})


@pytest.mark.parametrize(("model", "handler", "text"), [
    (TURBO, turbo(), "Hello there."),
    ("@cf/openai/whisper", raw_whisper, "It is a good day"),
    ("@cf/openai/whisper-tiny-en", raw_whisper, "It is a good day"),
    ("@cf/deepgram/nova-3", nova, "Guten Tag"),
])
async def test_every_variant_in_every_format(proxy, fake: FakeWorkers, model: str, handler: Any, text: str) -> None:
    fake.models[model] = handler
    async with proxy() as client:
        plain = await post_audio(client, model=model)
        assert plain.status_code == 200, plain.text
        validate(plain.json(), "CreateTranscriptionResponseJson")
        assert plain.json()["text"] == text
        verbose = (await post_audio(client, model=model, response_format="verbose_json")).json()
        validate(verbose, "CreateTranscriptionResponseVerboseJson")
        assert verbose["text"] == text and verbose["segments"] and verbose["words"]
        for fmt, start in (("text", text), ("srt", "1\n00:00:00,"), ("vtt", "WEBVTT\n\n00:00:00.")):
            answer = await post_audio(client, model=model, response_format=fmt)
            assert answer.status_code == 200 and answer.text.startswith(start), answer.text


async def test_turbo_gets_base64_language_and_prompt(proxy, fake: FakeWorkers) -> None:
    fake.models[TURBO] = turbo()
    async with proxy() as client:
        answer = await post_audio(client, language="fr", prompt="Names: Zoë", response_format="verbose_json")
    sent = fake.calls[-1][1]
    assert base64.b64decode(sent["audio"])[:4] == b"RIFF"
    assert sent["language"] == "fr" and sent["initial_prompt"] == "Names: Zoë" and "task" not in sent
    assert answer.json()["language"] == "french" and answer.json()["duration"] == 1.0


async def test_long_wav_is_chunked_with_offsets(proxy, fake: FakeWorkers) -> None:
    fake.models[TURBO] = turbo()
    audio = tone_wav(70.0)  # 16 kHz mono: 2.24 MB -> three 1 MiB pieces
    async with proxy() as client:
        verbose = (await post_audio(client, audio=audio, response_format="verbose_json")).json()
        srt = (await post_audio(client, audio=audio, response_format="srt")).text
    assert len([c for c in fake.calls if c[0] == TURBO]) == 6
    assert [(s["start"], s["end"]) for s in verbose["segments"]] == [(0.0, 32.768), (32.768, 65.536), (65.536, 70.0)]
    assert verbose["duration"] == 70.0 and verbose["words"][2]["start"] == 32.768
    assert "3\n00:01:05,536 --> 00:01:10,000\nHello there.\n" in srt


async def test_translation_to_english_uses_whispers_task(proxy, fake: FakeWorkers) -> None:
    fake.models[TURBO] = turbo(language="de")
    async with proxy() as client:
        answer = await post_audio(client, "/v1/audio/translations", response_format="verbose_json")
    assert fake.calls[-1][1]["task"] == "translate"
    body = answer.json()
    validate(body, "CreateTranslationResponseVerboseJson")
    assert body["text"] == "Translated." and body["language"] == "english"


async def test_translation_to_any_language_goes_through_m2m100(proxy, fake: FakeWorkers) -> None:
    fake.models[TURBO] = turbo(language="de")
    fake.models["@cf/meta/m2m100-1.2b"] = m2m100
    async with proxy() as client:
        answer = await post_audio(client, "/v1/audio/translations", target_language="fr", response_format="srt")
        same = await post_audio(client, "/v1/audio/transcriptions", target_language="de", language="de")
    assert "task" not in fake.calls[0][1]
    assert answer.text == "1\n00:00:00,000 --> 00:00:01,000\nfr(de):Hello there.\n"
    assert same.json()["text"] == "Hello there."  # already in the target language: no translation call
    assert [m for m, _ in fake.calls].count("@cf/meta/m2m100-1.2b") == 1


async def test_translate_needs_a_capable_model_or_a_language(proxy, fake: FakeWorkers) -> None:
    fake.models["@cf/openai/whisper"] = raw_whisper
    fake.models["@cf/meta/m2m100-1.2b"] = m2m100
    async with proxy() as client:
        refused = await post_audio(client, "/v1/audio/translations", model="@cf/openai/whisper")
        done = await post_audio(client, "/v1/audio/translations", model="@cf/openai/whisper", language="es")
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "model"
    assert done.json()["text"] == "en(es):It is a good day"


@pytest.mark.parametrize(("fields", "files", "param"), [
    ({"model": "whisper-1"}, None, "file"),
    ({"model": "whisper-1", "response_format": "xml"}, {"file": ("a.wav", b"RIFF", "audio/wav")}, "response_format"),
    ({"model": "whisper-1", "temperature": "hot"}, {"file": ("a.wav", b"RIFF", "audio/wav")}, "temperature"),
    ({"model": "whisper-1", "timestamp_granularities[]": "char"}, {"file": ("a.wav", b"x", "audio/wav")},
     "timestamp_granularities[0]"),
    ({}, {"file": ("a.wav", b"x", "audio/wav")}, "model"),
    ({"model": "whisper-1"}, {"file": ("a.wav", b"", "audio/wav")}, "file"),
    ({"model": "whisper-1"}, {"file": ("a.wav", b"RIFF\x00\x00\x00\x00WAVEjunk", "audio/wav")}, "file"),
])
async def test_bad_forms_are_400_with_param(proxy, fields: dict[str, Any], files: Any, param: str) -> None:
    async with proxy() as client:
        if files is None:
            answer = await client.post("/v1/audio/transcriptions", data=fields, files={"other": ("x", b"x")})
        else:
            answer = await client.post("/v1/audio/transcriptions", data=fields, files=files)
    assert answer.status_code == 400, answer.text
    validate(answer.json(), "ErrorResponse")
    assert answer.json()["error"]["param"] == param


async def test_json_body_is_refused_clearly(proxy) -> None:
    async with proxy() as client:
        answer = await client.post("/v1/audio/transcriptions", json={"model": "whisper-1"})
    assert answer.status_code == 415 and "multipart/form-data" in answer.json()["error"]["message"]


async def test_upload_over_the_limit_is_413(settings, api_key: str, fake: FakeWorkers) -> None:
    app = create_app(dataclasses.replace(settings, max_body_mb=0.05), transport=fake.transport())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t",
            headers={"Authorization": f"Bearer {api_key}"}) as client:
        answer = await post_audio(client, audio=tone_wav(3.0))
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "request_too_large"


async def test_upstream_413_on_compressed_audio_suggests_wav(proxy, fake: FakeWorkers) -> None:
    fake.models[TURBO] = fixed(413, error_envelope(3006, "AiError: Request too large (abcd1234-aaaa)"))
    async with proxy() as client:
        answer = await post_audio(client, audio=FAKE_MP3, filename="talk.mp3")
    error = answer.json()["error"]
    assert answer.status_code == 413 and "3006" in error["message"] and "WAV" in error["message"]


@pytest.mark.parametrize(("answer", "content_type"), [
    pytest.param(lambda: httpx.Response(200, json=envelope({"audio": base64.b64encode(FAKE_MP3).decode()})),
                 "application/json", id="melotts JSON base64"),
    pytest.param(lambda: httpx.Response(200, headers={"content-type": "audio/mpeg"}, content=FAKE_MP3),
                 "audio/mpeg", id="melotts raw mp3"),
])
async def test_melotts_both_answer_forms(proxy, fake: FakeWorkers, answer: Any, content_type: str) -> None:
    fake.models["@cf/myshell-ai/melotts"] = lambda request, body: answer()
    async with proxy() as client:
        speech = await client.post("/v1/audio/speech", json={"model": "@cf/myshell-ai/melotts", "input": "Hi",
                                                             "voice": "nova"})
    assert speech.status_code == 200 and speech.content == FAKE_MP3
    assert speech.headers["content-type"] == "audio/mpeg"
    assert fake.calls[-1][1] == {"prompt": "Hi", "lang": "en"}


async def test_aura_wav_and_errors(proxy, fake: FakeWorkers) -> None:
    wav = tone_wav(0.2, rate=24000)
    fake.models["@cf/deepgram/aura-1"] = lambda request, body: httpx.Response(
        200, headers={"content-type": "audio/wav"}, content=wav)
    async with proxy() as client:
        speech = await client.post("/v1/audio/speech", json={"model": "@cf/deepgram/aura-1", "input": "Hi",
                                                             "voice": "echo", "response_format": "wav"})
        melo_wav = await client.post("/v1/audio/speech", json={"model": "@cf/myshell-ai/melotts", "input": "Hi",
                                                               "voice": "alloy", "response_format": "wav"})
        fast = await client.post("/v1/audio/speech", json={"model": "tts-1", "input": "Hi", "voice": "alloy",
                                                           "speed": 2})
        chat_model = await client.post("/v1/audio/speech", json={"model": "gpt-4o", "input": "Hi", "voice": "alloy"})
        empty = await client.post("/v1/audio/speech", json={"model": "tts-1", "input": "", "voice": "alloy"})
    assert speech.content == wav and speech.headers["content-type"] == "audio/wav"
    assert fake.calls[-1][1] == {"text": "Hi", "speaker": "orion", "encoding": "linear16", "container": "wav",
                                 "sample_rate": 24000}
    for refused, param in ((melo_wav, "response_format"), (fast, "speed"), (chat_model, "model"), (empty, "input")):
        assert refused.status_code == 400 and refused.json()["error"]["param"] == param, refused.text


async def test_upstream_error_from_a_binary_model_keeps_cloudflares_words(proxy, fake: FakeWorkers) -> None:
    # aura-2's speakers are not listed in cfai, so an unknown one reaches Workers AI (aura-1's are checked first)
    fake.models["@cf/deepgram/aura-2-en"] = fixed(400, error_envelope(5006, "AiError: Bad input: speaker (uuid-1234)"))
    async with proxy() as client:
        answer = await client.post("/v1/audio/speech", json={"model": "@cf/deepgram/aura-2-en", "input": "Hi",
                                                             "voice": "nobody"})
    assert answer.status_code == 400 and "5006" in answer.json()["error"]["message"]
    assert json.loads(answer.text)["error"]["type"] == "invalid_request_error"


async def test_target_language_needs_to_know_the_spoken_one(proxy, fake: FakeWorkers) -> None:
    fake.models["@cf/openai/whisper"] = raw_whisper
    async with proxy() as client:
        answer = await post_audio(client, model="@cf/openai/whisper", target_language="fr")
        streamed = await post_audio(client, stream="true")
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "language"
    assert fake.calls == []  # refused before any audio went up
    assert streamed.status_code == 400 and streamed.json()["error"]["param"] == "stream"


async def test_long_mp3_is_chunked_on_frames_with_exact_offsets(proxy, fake: FakeWorkers) -> None:
    sent: list[bytes] = []

    def one_second(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        sent.append(base64.b64decode(body["audio"]))
        return httpx.Response(200, json=envelope({"text": "Part.", "segments": [
            {"start": 0.0, "end": 1.0, "text": " Part."}]}))

    fake.models[TURBO] = one_second
    audio = b"ID3\x04\x00\x00\x00\x00\x00\x0a" + bytes(10) + mp3_frames(3000)  # 1.25 MB, 78.4 s
    async with proxy() as client:
        verbose = (await post_audio(client, audio=audio, filename="talk.mp3", response_format="verbose_json")).json()
    assert len(sent) == 2 and all(piece[:2] == b"\xff\xfb" for piece in sent)
    frames_first = len(sent[0]) // 417
    assert [s["start"] for s in verbose["segments"]] == [0.0, round(frames_first * 1152 / 44100, 3)]
    assert verbose["duration"] == round(3000 * 1152 / 44100, 3)
