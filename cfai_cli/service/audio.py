"""Audio for both front ends: transcribe (WAV and MP3 split into pieces, run concurrently, stitched back on one
clock), translate (Whisper's translate task, or m2m100 into any language), and speak (MeloTTS / Aura).

Imports core, upstream (through Context), errors. The CLI and the proxy call exactly these functions.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable
from typing import Any

from cfai_cli.core import mp3
from cfai_cli.core.catalog import resolve_model
from cfai_cli.core.openai.audio import AudioFile, SpeechRequest, TranscriptionRequest
from cfai_cli.core.translate.audio import (
    CHUNK_BYTES,
    M2M100,
    audio_mime,
    can_translate,
    cues,
    encoding_of,
    from_transcript,
    merge_transcripts,
    to_workers_transcription,
    to_workers_translation,
    with_translated_text,
)
from cfai_cli.core.translate.languages import language_code
from cfai_cli.core.translate.speech import is_aura, is_melotts, to_workers_speech
from cfai_cli.core.wav import is_wav, read_wav, split_wav
from cfai_cli.core.workers.audio import Transcript, parse_transcript, parse_translation
from cfai_cli.errors import InvalidRequest, RequestTooLarge, UpstreamError
from cfai_cli.service.context import Context
from cfai_cli.service.gather import gather_all

MAX_CONCURRENT_CALLS = 4


def max_audio_bytes(ctx: Context) -> int:
    """The documented limit for audio sent whole (neither WAV nor MP3): `max_body_mb`, 25 MB like OpenAI's.

    WAV and MP3 go up in 1 MB pieces, so only the proxy's body limit (the same setting) bounds them; the CLI
    reads such files of any length.
    """
    return int(ctx.settings.max_body_mb * 1024 * 1024)


def chunk_count(audio: AudioFile) -> int:
    """How many upstream calls `transcribe` will make for this file (for a progress bar)."""
    if is_wav(audio.data):
        info = read_wav(audio.data)
        return max(1, -(-info.data_size // CHUNK_BYTES))
    found = mp3.frames(audio.data) if len(audio.data) > CHUNK_BYTES else None
    return len(mp3.split_mp3(audio.data, found, CHUNK_BYTES)) if found else 1


def _pieces(audio: AudioFile, limit: int) -> tuple[list[tuple[float, bytes]], float | None]:
    if not audio.data:
        raise InvalidRequest("The audio file is empty.", param="file", code="invalid_audio")
    if is_wav(audio.data):
        return split_wav(audio.data, CHUNK_BYTES), read_wav(audio.data).duration
    found = mp3.frames(audio.data) if len(audio.data) > CHUNK_BYTES else None
    if found is not None:
        return mp3.split_mp3(audio.data, found, CHUNK_BYTES), mp3.duration(found)
    if len(audio.data) > limit:
        raise RequestTooLarge(f"The audio file is {len(audio.data) / 1048576:.1f} MB; this format goes to Workers "
                              f"AI in one piece, and the limit for that is {limit / 1048576:g} MB (setting "
                              "max_body_mb). Convert it to WAV or MP3 (e.g. `ffmpeg -i in.m4a -ac 1 -ar 16000 "
                              "out.wav`), which cfai splits into pieces.", param="file")
    return [(0.0, audio.data)], None


async def _recognise(ctx: Context, model_id: str, req: TranscriptionRequest, data: bytes, mime: str) -> Transcript:
    call = to_workers_transcription(model_id, req, data, mime)
    try:
        answer = await ctx.workers.run_raw(model_id, json_body=call.json, content=call.content,
                                           content_type=call.content_type, params=call.params or None)
    except RequestTooLarge as exc:
        raise RequestTooLarge(exc.message + " Workers AI refused this much audio in one request; convert it to WAV or "
                              "MP3 (e.g. `ffmpeg -i in.m4a -ac 1 -ar 16000 out.wav`), which cfai splits into pieces.",
                              param="file", upstream_code=exc.upstream_code) from None
    if answer.body is not None:
        raise UpstreamError("Workers AI answered the transcription with bytes instead of JSON.")
    return parse_transcript(answer.result)


async def _translate_cues(ctx: Context, t: Transcript, source: str, target: str) -> Transcript:
    limit = asyncio.Semaphore(MAX_CONCURRENT_CALLS)

    async def one(text: str) -> str:
        async with limit:
            return parse_translation(await ctx.workers.run(M2M100, to_workers_translation(text, source, target)))

    found = cues(t)
    await ctx.workers.reserve(M2M100, ctx.record.calls + len(found))
    texts = await gather_all(one(c.text) for c in found)
    return with_translated_text(t, texts, target)


async def transcribe(ctx: Context, req: TranscriptionRequest, audio: AudioFile, *,
                     progress: Callable[[int], None] | None = None) -> tuple[Any, str]:
    """(body, media type) for a transcription or translation request; `progress(1)` after each piece."""
    ctx.record.asked = req.model
    model_id = resolve_model(req.model, ctx.settings.aliases)
    target = req.target_language or ("en" if req.task == "translate" else None)
    whisper_translates = req.task == "translate" and target == "en" and can_translate(model_id)
    if req.task == "translate" and target == "en" and not whisper_translates and not req.language:
        raise InvalidRequest(f"{model_id} cannot translate speech itself; use whisper-1 "
                             "(@cf/openai/whisper-large-v3-turbo), or say the spoken `language` so cfai can "
                             "translate the transcript with m2m100.", param="model", code="unsupported_value")
    if target is not None and not whisper_translates and not req.language and encoding_of(model_id) == "bytes":
        # Checked before any audio goes up: whisper and whisper-tiny-en never say which language they heard.
        raise InvalidRequest(f"{model_id} does not report the spoken language; say it with `language` so the "
                             "transcript can be translated.", param="language", code="missing_language")
    pieces, duration = _pieces(audio, max_audio_bytes(ctx))
    mime = audio_mime(audio.filename, audio.content_type, audio.data)
    limit = asyncio.Semaphore(MAX_CONCURRENT_CALLS)

    async def one(offset: float, data: bytes) -> tuple[float, Transcript]:
        async with limit:
            t = await _recognise(ctx, model_id, req, data, mime)
        if progress is not None:
            progress(1)
        return offset, t

    await ctx.workers.reserve(model_id, len(pieces))
    transcript = merge_transcripts(await gather_all(one(o, d) for o, d in pieces), duration)
    # Speech recognition is priced per audio minute: an estimate where Workers AI reports no neurons (service.cost).
    ctx.record.audio_seconds += transcript.seconds()
    language = "en" if whisper_translates else None
    if target is not None and not whisper_translates:
        spoken = req.language or transcript.language
        if spoken is None:
            raise InvalidRequest(f"{model_id} does not report the spoken language; say it with `language` so "
                                 "the transcript can be translated.", param="language", code="missing_language")
        source, goal = language_code(spoken), language_code(target)
        if source != goal:
            transcript = await _translate_cues(ctx, transcript, source, goal)
        language = target
    return from_transcript(transcript, req, language=language)


async def speak(ctx: Context, req: SpeechRequest) -> tuple[bytes, str]:
    """(audio bytes, content type) for a speech request."""
    ctx.record.asked = req.model
    model_id = resolve_model(req.model, ctx.settings.aliases)
    if not (is_aura(model_id) or is_melotts(model_id)):
        raise InvalidRequest(f"{model_id} is not a text-to-speech model cfai can drive; use tts-1 "
                             "(@cf/deepgram/aura-1), another Deepgram Aura model or @cf/myshell-ai/melotts.",
                             param="model", code="unsupported_model")
    call = to_workers_speech(model_id, req)
    answer = await ctx.workers.run_raw(model_id, json_body=call.body)
    if answer.body is not None:
        audio = answer.body
    else:
        # MeloTTS may answer JSON with base64 MP3 instead of raw bytes (reference §8, §14.7).
        encoded = answer.result.get("audio") if isinstance(answer.result, dict) else None
        if not isinstance(encoded, str) or not encoded:
            raise UpstreamError(f"Workers AI answered {model_id} without audio.")
        try:
            audio = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise UpstreamError(f"Workers AI answered {model_id} with audio that is not valid base64.") from None
    # What it used, for an estimate where Workers AI reports no neurons (service.cost): Aura is priced per
    # character spoken, MeloTTS per minute of audio made.
    ctx.record.characters += len(req.input)
    ctx.record.audio_seconds += audio_seconds(audio)
    return audio, call.content_type


def audio_seconds(data: bytes) -> float:
    """The length of WAV or MP3 audio (0 for another format or one that does not parse)."""
    if is_wav(data):
        try:
            return read_wav(data).duration
        except InvalidRequest:  # a broken WAV from the model: heard as nothing, not an error for the client
            return 0.0
    found = mp3.frames(data)
    return mp3.duration(found) if found else 0.0
