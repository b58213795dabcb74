"""Audio translation tables: per-variant Whisper input, OpenAI bodies in every format (schema-checked), chunk
merging, WAV splitting, TTS input per model and the voice mapping."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from cfai_cli.core.openai.audio import SpeechRequest, TranscriptionRequest
from cfai_cli.core.translate.audio import (
    audio_mime,
    can_translate,
    cues,
    from_transcript,
    merge_transcripts,
    to_workers_transcription,
)
from cfai_cli.core.translate.languages import language_code, language_name
from cfai_cli.core.translate.speech import to_workers_speech
from cfai_cli.core.wav import read_wav, split_wav
from cfai_cli.core.workers.audio import Segment, Transcript, Word, parse_transcript
from cfai_cli.errors import InvalidRequest
from tests.audio_fixtures import FAKE_MP3, tone_wav, wav_seconds
from tests.openai_schema import validate


def request(**fields: Any) -> TranscriptionRequest:
    return TranscriptionRequest.model_validate({"model": "whisper-1", **fields})


WAV = tone_wav(0.5)


@pytest.mark.parametrize(("model", "fields", "expected"), [
    ("@cf/openai/whisper", {}, {"content": WAV, "content_type": "application/octet-stream", "json": None}),
    ("@cf/openai/whisper-tiny-en", {"language": "en"}, {"content": WAV, "json": None}),
    ("@cf/openai/whisper-large-v3-turbo", {}, {"json": {"audio": base64.b64encode(WAV).decode()}}),
    ("@cf/openai/whisper-large-v3-turbo", {"language": "pt-BR", "prompt": "Ana, Zé"},
     {"json": {"audio": base64.b64encode(WAV).decode(), "language": "pt", "initial_prompt": "Ana, Zé"}}),
    ("@cf/openai/whisper-large-v3-turbo", {"task": "translate"},
     {"json": {"audio": base64.b64encode(WAV).decode(), "task": "translate"}}),
    # Translation into French is m2m100's job afterwards: Whisper just transcribes.
    ("@cf/openai/whisper-large-v3-turbo", {"task": "translate", "target_language": "fr"},
     {"json": {"audio": base64.b64encode(WAV).decode()}}),
    ("@cf/deepgram/nova-3", {}, {"content": WAV, "content_type": "audio/wav",
                                 "params": {"smart_format": "true", "punctuate": "true", "detect_language": "true"}}),
    ("@cf/deepgram/nova-3", {"language": "fr"}, {"params": {"smart_format": "true", "punctuate": "true",
                                                            "language": "fr"}}),
])
def test_input_encoding_per_variant(model: str, fields: dict[str, Any], expected: dict[str, Any]) -> None:
    call = to_workers_transcription(model, request(**fields), WAV, "audio/wav")
    for key, value in expected.items():
        assert getattr(call, key) == value, key


def test_only_turbo_translates() -> None:
    assert can_translate("@cf/openai/whisper-large-v3-turbo")
    assert not can_translate("@cf/openai/whisper") and not can_translate("@cf/deepgram/nova-3")


TURBO = parse_transcript({
    "transcription_info": {"language": "fr", "duration": 4.0}, "text": "Bonjour. Ça va?",
    "segments": [{"start": 0, "end": 1.5, "text": " Bonjour.", "avg_logprob": -0.1,
                  "words": [{"word": " Bonjour.", "start": 0, "end": 1.5}]},
                 {"start": 1.5, "end": 3.25, "text": " Ça va?",
                  "words": [{"word": " Ça", "start": 1.5, "end": 2}, {"word": " va?", "start": 2, "end": 3.25}]}]})
WHISPER = parse_transcript({"text": "It is a good day", "words": [
    {"word": "It", "start": 0.5, "end": 1.0}, {"word": "is", "start": 1.0, "end": 1.25},
    {"word": "a", "start": 1.25, "end": 1.5}, {"word": "good", "start": 1.5, "end": 2.0},
    {"word": "day", "start": 2.0, "end": 2.5}], "vtt": "WEBVTT\n\n00:00.500 --> 00:02.500\nIt is a good day\n"})


@pytest.mark.parametrize("transcript", [TURBO, WHISPER], ids=["turbo", "whisper"])
def test_json_and_verbose_bodies_match_the_openai_schemas(transcript: Transcript) -> None:
    body, media = from_transcript(transcript, request())
    assert media == "application/json" and body["text"] == transcript.text
    validate(body, "CreateTranscriptionResponseJson")
    verbose, _ = from_transcript(transcript, request(response_format="verbose_json"))
    validate(verbose, "CreateTranscriptionResponseVerboseJson")
    assert verbose["segments"] and verbose["words"]
    assert verbose["usage"] == {"type": "duration", "seconds": verbose["duration"]}
    translated, _ = from_transcript(transcript, request(response_format="verbose_json", task="translate"),
                                    language="en")
    validate(translated, "CreateTranslationResponseVerboseJson")
    assert translated["language"] == "english" and "words" not in translated
    plain, _ = from_transcript(transcript, request(task="translate"))
    validate(plain, "CreateTranslationResponseJson")


def test_verbose_fields() -> None:
    verbose, _ = from_transcript(TURBO, request(response_format="verbose_json"))
    assert verbose["language"] == "french" and verbose["duration"] == 4.0
    assert [(s["id"], s["start"], s["end"], s["text"]) for s in verbose["segments"]] == [
        (0, 0.0, 1.5, " Bonjour."), (1, 1.5, 3.25, " Ça va?")]
    assert verbose["words"][2] == {"word": "va?", "start": 2.0, "end": 3.25}
    only_words, _ = from_transcript(TURBO, request(response_format="verbose_json", timestamp_granularities=["word"]))
    assert "segments" not in only_words and len(only_words["words"]) == 3
    only_segments, _ = from_transcript(TURBO, request(response_format="verbose_json",
                                                      timestamp_granularities=["segment"]))
    assert "words" not in only_segments


def test_whisper_without_duration_uses_the_last_timestamp() -> None:
    verbose, _ = from_transcript(WHISPER, request(response_format="verbose_json"))
    assert verbose["duration"] == 2.5 and verbose["language"] == "english"


@pytest.mark.parametrize(("fmt", "transcript", "expected"), [
    ("text", TURBO, "Bonjour. Ça va?\n"),
    ("srt", TURBO, "1\n00:00:00,000 --> 00:00:01,500\nBonjour.\n\n2\n00:00:01,500 --> 00:00:03,250\nÇa va?\n"),
    ("vtt", TURBO, "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nBonjour.\n\n00:00:01.500 --> 00:00:03.250\nÇa va?\n"),
    # whisper: its own WebVTT gives the cues (one here), rewritten with hours.
    ("srt", WHISPER, "1\n00:00:00,500 --> 00:00:02,500\nIt is a good day\n"),
    # words only: grouped into cues.
    ("srt", Transcript("a b.", words=(Word("a", 0, 1), Word("b.", 1, 2))), "1\n00:00:00,000 --> 00:00:02,000\na b.\n"),
    # text only: one cue over the whole duration.
    ("vtt", Transcript("hi", duration=3.0), "WEBVTT\n\n00:00:00.000 --> 00:00:03.000\nhi\n"),
    ("srt", Transcript(""), ""),
])
def test_text_formats(fmt: str, transcript: Transcript, expected: str) -> None:
    body, media = from_transcript(transcript, request(response_format=fmt))
    assert body == expected
    assert media == ("text/vtt" if fmt == "vtt" else "text/plain")


def test_merge_offsets_every_chunk_onto_one_clock() -> None:
    first = Transcript("one.", "en", 30.0, (Segment(0, 29.5, "one.", words=(Word("one.", 0, 29.5),)),))
    second = Transcript("two.", None, 12.0, (Segment(1.0, 2.0, "two."),))
    merged = merge_transcripts([(0.0, first), (30.0, second)], 42.0)
    assert merged.text == "one. two." and merged.language == "en" and merged.duration == 42.0
    assert [(c.start, c.end, c.text) for c in cues(merged)] == [(0, 29.5, "one."), (31.0, 32.0, "two.")]
    # A chunk with only WebVTT timing keeps it through the merge.
    whisper_chunk = Transcript("x", vtt="WEBVTT\n\n00:00.000 --> 00:01.000\nx\n")
    merged = merge_transcripts([(0.0, whisper_chunk), (60.0, whisper_chunk)], None)
    assert [(c.start, c.end) for c in cues(merged)] == [(0.0, 1.0), (60.0, 61.0)]


@pytest.mark.parametrize(("rate", "channels"), [(16000, 1), (44100, 2), (8000, 1)])
def test_split_wav_pieces_are_valid_and_contiguous(rate: int, channels: int) -> None:
    data = tone_wav(3.0, rate=rate, channels=channels)
    pieces = split_wav(data, 20_001)
    assert len(pieces) > 1
    total = 0.0
    for offset, piece in pieces:
        assert offset == pytest.approx(total)
        total += wav_seconds(piece)
    assert total == pytest.approx(3.0) and read_wav(data).duration == pytest.approx(3.0)
    assert split_wav(data, 10**9) == [(0.0, data)]


@pytest.mark.parametrize("bad", [b"RIFF\x00\x00\x00\x00WAVE", b"RIFF\x10\x00\x00\x00WAVEdata\x04\x00\x00\x00abcd",
                                 FAKE_MP3])
def test_broken_wav_is_a_400(bad: bytes) -> None:
    with pytest.raises(InvalidRequest):
        read_wav(bad)


@pytest.mark.parametrize(("filename", "declared", "data", "mime"), [
    ("x.bin", "", WAV, "audio/wav"), ("x", "", FAKE_MP3, "audio/mpeg"), ("x", "", b"fLaC....", "audio/flac"),
    ("x", "", b"OggS....", "audio/ogg"), ("x", "", b"\x00\x00\x00\x18ftypM4A ", "audio/mp4"),
    ("talk.m4a", "", b"????", "audio/mp4"), ("x", "audio/webm;codecs=opus", b"????", "audio/webm"),
    ("x", "text/plain", b"????", "application/octet-stream"),
])
def test_audio_mime(filename: str, declared: str, data: bytes, mime: str) -> None:
    assert audio_mime(filename, declared, data) == mime


def speech(**fields: Any) -> SpeechRequest:
    return SpeechRequest.model_validate({"model": "tts-1", "input": "Hello", "voice": "alloy", **fields})


@pytest.mark.parametrize(("model", "fields", "body", "content_type"), [
    ("@cf/myshell-ai/melotts", {}, {"prompt": "Hello", "lang": "en"}, "audio/mpeg"),
    ("@cf/myshell-ai/melotts", {"voice": "fr"}, {"prompt": "Hello", "lang": "fr"}, "audio/mpeg"),
    ("@cf/myshell-ai/melotts", {"voice": {"id": "nova"}}, {"prompt": "Hello", "lang": "en"}, "audio/mpeg"),
    ("@cf/deepgram/aura-1", {}, {"text": "Hello", "speaker": "asteria", "encoding": "mp3"}, "audio/mpeg"),
    ("@cf/deepgram/aura-1", {"voice": "onyx", "response_format": "wav"},
     {"text": "Hello", "speaker": "zeus", "encoding": "linear16", "container": "wav", "sample_rate": 24000},
     "audio/wav"),
    ("@cf/deepgram/aura-1", {"voice": "luna", "response_format": "opus"},
     {"text": "Hello", "speaker": "luna", "encoding": "opus", "container": "ogg"}, "audio/opus"),
    ("@cf/deepgram/aura-1", {"voice": "fable", "response_format": "pcm"},
     {"text": "Hello", "speaker": "helios", "encoding": "linear16", "container": "none", "sample_rate": 24000},
     "audio/pcm"),
    ("@cf/deepgram/aura-2-en", {"voice": "thalia", "response_format": "flac"},
     {"text": "Hello", "speaker": "thalia", "encoding": "flac"}, "audio/flac"),
])
def test_speech_input(model: str, fields: dict[str, Any], body: dict[str, Any], content_type: str) -> None:
    call = to_workers_speech(model, speech(**fields))
    assert call.body == body and call.content_type == content_type


@pytest.mark.parametrize(("model", "fields", "param"), [
    ("@cf/myshell-ai/melotts", {"response_format": "wav"}, "response_format"),
    ("@cf/myshell-ai/melotts", {"voice": "klingon"}, "voice"),
    ("@cf/myshell-ai/melotts", {"speed": 1.5}, "speed"),
    ("@cf/deepgram/aura-1", {"stream_format": "sse"}, "stream_format"),
    ("@cf/deepgram/aura-1", {"voice": "a b"}, "voice"),
])
def test_speech_requests_we_cannot_honour_are_400s_with_param(model: str, fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_workers_speech(model, speech(**fields))
    assert caught.value.param == param


def test_languages() -> None:
    assert language_name("en") == "english" and language_name("pt-BR") == "portuguese"
    assert language_name(None) == "english" and language_name("xx") == "xx"
    assert language_code("French") == "fr" and language_code("pt-BR") == "pt"
