"""Emulated Workers AI audio models (reference §6–§8): Whisper variants, nova-3, MeloTTS, Aura and m2m100.

Imports only the standard library and the emulator's own modules. Nothing is really heard or
spoken: transcripts are canned sentences timed over the audio's real duration (read from a WAV header, or
estimated from the size at 128 kbit/s), and speech is valid-looking silence, so timing logic can be tested.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import wave
from collections.abc import Mapping
from typing import Any

from cfai_cli.emulator import sound
from cfai_cli.emulator.asgi import Response
from cfai_cli.emulator.wire import bad_input, envelope, json_response

RAW_MODELS = frozenset({"@cf/openai/whisper", "@cf/openai/whisper-tiny-en", "@cf/deepgram/nova-3"})
WHISPER_TURBO = "@cf/openai/whisper-large-v3-turbo"
TTS_MODELS = frozenset({"@cf/myshell-ai/melotts", "@cf/deepgram/aura-1", "@cf/deepgram/aura-2-en",
                        "@cf/deepgram/aura-2-es"})
TRANSLATION = "@cf/meta/m2m100-1.2b"
MODELS = RAW_MODELS | TTS_MODELS | {WHISPER_TURBO, TRANSLATION}
SEGMENT_SECONDS = 5.0
_AURA_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac",
               "linear16": "audio/l16", "mulaw": "audio/basic", "alaw": "audio/basic"}


def takes_raw_body(model: str, content_type: str, raw: bytes) -> bool:
    """Whisper and nova-3 also take the audio itself as the body; JSON bodies go the usual way."""
    return model in RAW_MODELS and "json" not in content_type.lower() and raw[:64].lstrip()[:1] != b"{"


def duration_of(audio: bytes) -> float:
    try:
        with wave.open(io.BytesIO(audio)) as w:
            return float(w.getnframes()) / float(w.getframerate())
    except (wave.Error, EOFError):
        return len(audio) / 16000.0  # 128 kbit/s, the common MP3 rate


def _timed(duration: float) -> list[dict[str, Any]]:
    count = max(1, math.ceil(duration / SEGMENT_SECONDS - 1e-9))
    segments = []
    for i in range(count):
        start, end = i * SEGMENT_SECONDS, min((i + 1) * SEGMENT_SECONDS, duration)
        words = f"Offline speech, part {i + 1}.".split(" ")
        step = (end - start) / len(words)
        timed = [{"word": w, "start": round(start + j * step, 3), "end": round(start + (j + 1) * step, 3)}
                 for j, w in enumerate(words)]
        segments.append({"start": round(start, 3), "end": round(end, 3), "text": " ".join(words), "words": timed})
    return segments


def _vtt(segments: list[dict[str, Any]]) -> str:
    def ts(s: float) -> str:
        ms = round(s * 1000)
        return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"

    return "WEBVTT\n\n" + "".join(f"{ts(s['start'])} --> {ts(s['end'])}\n{s['text']}\n\n" for s in segments)


def _whisper(audio: bytes) -> dict[str, Any]:
    segments = _timed(duration_of(audio))
    words = [w for s in segments for w in s["words"]]
    return {"text": " ".join(s["text"] for s in segments), "word_count": len(words), "words": words,
            "vtt": _vtt(segments)}


def _turbo(body: Mapping[str, Any]) -> dict[str, Any]:
    if "audio" not in body:
        raise bad_input("required properties at '/' are 'audio'")
    if not isinstance(body["audio"], str):
        raise bad_input("'/audio' must be string")
    try:
        audio = base64.b64decode(body["audio"], validate=True)
    except (binascii.Error, ValueError):
        raise bad_input("'/audio' is not valid base64") from None
    if body.get("task", "transcribe") not in ("transcribe", "translate"):
        raise bad_input("'/task' must be equal to one of the allowed values")
    duration = duration_of(audio)
    segments = [{**s, "temperature": 0.0, "avg_logprob": -0.25, "compression_ratio": 1.2, "no_speech_prob": 0.01}
                for s in _timed(duration)]
    language = body.get("language") or "en"
    return {"transcription_info": {"language": "en" if body.get("task") == "translate" else language,
                                   "language_probability": 0.99, "duration": round(duration, 3),
                                   "duration_after_vad": round(duration, 3)},
            "text": " ".join(s["text"] for s in segments),
            "word_count": sum(len(s["words"]) for s in segments), "segments": segments, "vtt": _vtt(segments)}


def _nova(audio: bytes, query: Mapping[str, str]) -> dict[str, Any]:
    duration = duration_of(audio)
    segments = _timed(duration)
    words = [{**w, "confidence": 0.98, "punctuated_word": w["word"]} for s in segments for w in s["words"]]
    channel: dict[str, Any] = {"alternatives": [{"transcript": " ".join(s["text"] for s in segments),
                                                 "confidence": 0.98, "words": words}]}
    if query.get("detect_language") == "true":
        channel["detected_language"] = "en"
    return {"metadata": {"duration": round(duration, 3), "channels": 1}, "results": {"channels": [channel]}}


def run_raw(model: str, raw: bytes, query: Mapping[str, str]) -> Response:
    """A speech-recognition call whose body is the audio itself."""
    if not raw:
        raise bad_input("the request body is empty")
    if model == "@cf/deepgram/nova-3":
        return json_response(envelope(_nova(raw, query)))
    return json_response(envelope(_whisper(raw)))


def _speech_seconds(text: str) -> float:
    return max(0.3, 0.35 * len(text.split()))


def _aura(body: Mapping[str, Any]) -> Response:
    text = body.get("text")
    if not isinstance(text, str) or not text:
        raise bad_input("required properties at '/' are 'text'")
    encoding, container = str(body.get("encoding", "mp3")), str(body.get("container", "none"))
    if encoding not in _AURA_TYPES:
        raise bad_input("'/encoding' must be equal to one of the allowed values")
    if container not in ("none", "wav", "ogg"):
        raise bad_input("'/container' must be equal to one of the allowed values")
    # Deepgram's pairings: wav wraps the PCM encodings, ogg wraps opus (which has no other container).
    if (container == "wav" and encoding not in ("linear16", "mulaw", "alaw")) or (
            container == "ogg" and encoding != "opus"):
        raise bad_input(f"container '{container}' cannot hold encoding '{encoding}'")
    seconds = _speech_seconds(text)
    rate = int(body.get("sample_rate", 24000))
    if container == "wav":
        return Response(sound.wav(seconds, rate, encoding), media_type="audio/wav")
    audio = {"linear16": lambda: sound.pcm(seconds, rate), "flac": lambda: sound.flac(seconds, rate),
             "opus": lambda: sound.ogg_opus(seconds), "aac": lambda: sound.adts(seconds),
             "mulaw": lambda: b"\xff" * int(seconds * rate), "alaw": lambda: b"\xd5" * int(seconds * rate),
             "mp3": lambda: sound.mp3(seconds)}[encoding]()
    return Response(audio, media_type=_AURA_TYPES[encoding])


def run(model: str, body: Mapping[str, Any]) -> Response:
    """An audio or translation model called with a JSON body."""
    if model == WHISPER_TURBO:
        return json_response(envelope(_turbo(body)))
    if model in RAW_MODELS:
        audio = body.get("audio")
        if not isinstance(audio, list) or not all(isinstance(b, int) and 0 <= b <= 255 for b in audio):
            raise bad_input("'/audio' must be array of integers 0-255")
        return run_raw(model, bytes(audio), {})
    if model == TRANSLATION:
        text, target = body.get("text"), body.get("target_lang")
        if not isinstance(text, str) or not isinstance(target, str):
            raise bad_input("required properties at '/' are 'text,target_lang'")
        return json_response(envelope({"translated_text": f"[{target}] {text}"}))
    if model.startswith("@cf/deepgram/aura"):
        return _aura(body)
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise bad_input("required properties at '/' are 'prompt'")
    # MeloTTS as the Python SDK types it: JSON with base64 MP3 (the raw form is UNCONFIRMED, reference §14.7).
    audio = sound.mp3(_speech_seconds(prompt))
    return json_response(envelope({"audio": base64.b64encode(audio).decode("ascii")}))
