"""Text to speech: OpenAI's speech request -> MeloTTS or Deepgram Aura input, and the audio type to answer.

Pure: standard library, core and errors. MeloTTS speaks MP3 only and takes a language, so OpenAI voices map
to English and a language code works as a voice ("fr"); Aura takes a speaker and an encoding/container, so it
can produce every OpenAI format and OpenAI voices map to the closest Aura speaker (reference §8).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cfai_cli.core.openai.audio import SpeechRequest
from cfai_cli.errors import InvalidRequest

MELOTTS_LANGUAGES = ("en", "es", "fr", "zh", "ja", "ko")
AURA_1_SPEAKERS = ("angus", "asteria", "arcas", "orion", "orpheus", "athena", "luna", "zeus", "perseus",
                   "helios", "hera", "stella")
# OpenAI voice -> the Aura-1 speaker closest in character (documented in docs/audio.md).
AURA_VOICES: dict[str, str] = {
    "alloy": "asteria", "ash": "arcas", "ballad": "orpheus", "coral": "luna", "echo": "orion",
    "fable": "helios", "nova": "stella", "onyx": "zeus", "sage": "athena", "shimmer": "hera",
    "verse": "perseus", "marin": "luna", "cedar": "angus",
}
OPENAI_VOICES = frozenset(AURA_VOICES)
CONTENT_TYPES = {"mp3": "audio/mpeg", "opus": "audio/opus", "aac": "audio/aac", "flac": "audio/flac",
                 "wav": "audio/wav", "pcm": "audio/pcm"}
# OpenAI format -> Aura (encoding, container). pcm is OpenAI's raw 24 kHz 16-bit little-endian mono.
_AURA_FORMATS: dict[str, dict[str, Any]] = {
    "mp3": {"encoding": "mp3"},
    "opus": {"encoding": "opus", "container": "ogg"},
    "aac": {"encoding": "aac"},
    "flac": {"encoding": "flac"},
    "wav": {"encoding": "linear16", "container": "wav", "sample_rate": 24000},
    "pcm": {"encoding": "linear16", "container": "none", "sample_rate": 24000},
}


@dataclass(frozen=True, slots=True)
class SpeechCall:
    body: dict[str, Any]
    content_type: str  # what the proxy answers with


def is_aura(model_id: str) -> bool:
    return model_id.startswith("@cf/deepgram/aura")


def is_melotts(model_id: str) -> bool:
    return model_id.startswith("@cf/myshell-ai/melotts")


def _check_common(req: SpeechRequest) -> None:
    if req.stream_format == "sse":
        raise InvalidRequest("stream_format 'sse' is not supported: Workers AI speech models answer whole audio "
                             "files. Leave stream_format unset or use 'audio'.", param="stream_format",
                             code="unsupported_value")
    if abs(req.speed - 1.0) > 1e-9:
        raise InvalidRequest(f"speed {req.speed:g} is not supported: neither MeloTTS nor Deepgram Aura on Workers "
                             "AI can change the speaking rate. Use 1.0.", param="speed", code="unsupported_value")


def to_workers_speech(model_id: str, req: SpeechRequest) -> SpeechCall:
    _check_common(req)
    voice = req.voice_name().strip().lower()
    if is_aura(model_id):
        speaker = AURA_VOICES.get(voice, voice)
        known = AURA_1_SPEAKERS if model_id == "@cf/deepgram/aura-1" else None  # aura-2 has many more
        if not speaker.replace("-", "").isalnum() or (known is not None and speaker not in known):
            raise InvalidRequest(
                f"Unknown voice {req.voice_name()!r} for {model_id}: use an OpenAI voice ({', '.join(AURA_VOICES)})"
                f" or an Aura-1 speaker ({', '.join(AURA_1_SPEAKERS)}). For another language, name "
                "'@cf/myshell-ai/melotts' as the model with the language as the voice (fr, es, …).",
                param="voice", code="invalid_value")
        body = {"text": req.input, "speaker": speaker, **_AURA_FORMATS[req.response_format]}
        return SpeechCall(body, CONTENT_TYPES[req.response_format])
    if req.response_format != "mp3":
        raise InvalidRequest(
            f"response_format {req.response_format!r} cannot be produced by {model_id}, which speaks MP3 only. "
            "Use 'mp3', or a Deepgram Aura model (model '@cf/deepgram/aura-1') for opus, aac, flac, wav and pcm.",
            param="response_format", code="unsupported_value")
    if voice in OPENAI_VOICES or not voice:
        lang = "en"
    elif voice.split("-")[0] in MELOTTS_LANGUAGES:
        lang = voice.split("-")[0]
    else:
        raise InvalidRequest(
            f"Unknown voice {req.voice_name()!r} for {model_id}: use an OpenAI voice (alloy, echo, …; spoken in "
            f"English) or a MeloTTS language ({', '.join(MELOTTS_LANGUAGES)}).", param="voice", code="invalid_value")
    return SpeechCall({"prompt": req.input, "lang": lang}, "audio/mpeg")
