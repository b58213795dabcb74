"""Transcription and translation: OpenAI form -> Workers AI speech-recognition input, Transcript -> OpenAI body.

Pure: the standard library, core and errors. Each Whisper variant gets the input
encoding it documents (reference §6): raw bytes for whisper / whisper-tiny-en, base64 JSON for
whisper-large-v3-turbo, raw audio with its real MIME type and query options for nova-3.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from cfai_cli.core.openai.audio import (
    DurationUsage,
    TranscriptionJson,
    TranscriptionRequest,
    TranscriptionSegment,
    TranscriptionVerbose,
    TranscriptionWord,
)
from cfai_cli.core.translate.languages import language_name
from cfai_cli.core.translate.subtitles import Cue, cues_from_words, parse_vtt, to_srt, to_vtt
from cfai_cli.core.workers.audio import Segment, Transcript

M2M100 = "@cf/meta/m2m100-1.2b"
# Raw audio bytes per upstream call. No limit is documented (reference §6.3, §14.8); Cloudflare's own
# tutorial sends 1 MB pieces, so WAV and MP3 are cut into pieces of this size and other formats go whole.
CHUNK_BYTES = 1024 * 1024
Encoding = Literal["bytes", "base64", "deepgram"]
_RAW_WHISPER = frozenset({"@cf/openai/whisper", "@cf/openai/whisper-tiny-en"})
_MIME_BY_EXTENSION = {
    "mp3": "audio/mpeg", "mpga": "audio/mpeg", "mpeg": "audio/mpeg", "wav": "audio/wav", "m4a": "audio/mp4",
    "mp4": "audio/mp4", "ogg": "audio/ogg", "oga": "audio/ogg", "opus": "audio/ogg", "webm": "audio/webm",
    "flac": "audio/flac", "aac": "audio/aac",
}


@dataclass(frozen=True, slots=True)
class UpstreamAudio:
    """One speech-recognition call: a JSON body, or raw bytes with a content type and query options."""

    json: dict[str, Any] | None = None
    content: bytes | None = None
    content_type: str | None = None
    params: dict[str, str] = field(default_factory=dict)


def encoding_of(model_id: str) -> Encoding:
    if model_id in _RAW_WHISPER:
        return "bytes"
    if model_id.startswith("@cf/deepgram/"):
        return "deepgram"
    # whisper-large-v3-turbo and, as the newest documented form, any other speech model: base64 JSON.
    return "base64"


def can_translate(model_id: str) -> bool:
    """Only whisper-large-v3-turbo documents Whisper's `task: "translate"` on Workers AI."""
    return encoding_of(model_id) == "base64"


def audio_mime(filename: str, declared: str, data: bytes) -> str:
    """The audio's MIME type from its magic bytes, the file extension, or what the client declared."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    if data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "audio/mpeg"
    if data[:4] == b"fLaC":
        return "audio/flac"
    if data[:4] == b"OggS":
        return "audio/ogg"
    if data[4:8] == b"ftyp":
        return "audio/mp4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "audio/webm"
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if extension in _MIME_BY_EXTENSION:
        return _MIME_BY_EXTENSION[extension]
    declared = declared.split(";")[0].strip().lower()
    return declared if declared.startswith(("audio/", "video/")) else "application/octet-stream"


def to_workers_transcription(model_id: str, req: TranscriptionRequest, audio: bytes, mime: str) -> UpstreamAudio:
    encoding = encoding_of(model_id)
    if encoding == "bytes":
        return UpstreamAudio(content=audio, content_type="application/octet-stream")
    if encoding == "deepgram":
        params = {"smart_format": "true", "punctuate": "true"}
        if req.language:
            params["language"] = req.language
        else:
            params["detect_language"] = "true"
        return UpstreamAudio(content=audio, content_type=mime, params=params)
    body: dict[str, Any] = {"audio": base64.b64encode(audio).decode("ascii")}
    if req.task == "translate" and req.target_language in (None, "en"):
        body["task"] = "translate"
    if req.language:
        # The schema defaults `language` to "en" (reference §6.2): pass it whenever the client knows it.
        body["language"] = req.language.split("-")[0]
    if req.prompt:
        body["initial_prompt"] = req.prompt
    return UpstreamAudio(json=body)


def merge_transcripts(parts: Sequence[tuple[float, Transcript]], duration: float | None) -> Transcript:
    """One transcript out of the transcripts of consecutive chunks, times moved to the whole file's clock."""
    if len(parts) == 1 and parts[0][0] == 0:
        only = parts[0][1]
        return only if only.duration is not None or duration is None else Transcript(
            only.text, only.language, duration, only.segments, only.words, only.vtt, only.extra)
    # Segments first (from the chunk's WebVTT or words if need be): shifting drops the chunk's own WebVTT.
    shifted = [replace(t, segments=_segments_of(t)).shifted(offset) for offset, t in parts]
    segments = tuple(s for t in shifted for s in t.segments)
    language = next((t.language for t in shifted if t.language), None)
    total = duration if duration is not None else sum(t.duration or 0.0 for t in shifted) or None
    return Transcript(" ".join(t.text for t in shifted if t.text).strip(), language, total, segments,
                      tuple(w for t in shifted for w in t.words))


def _segments_of(t: Transcript) -> tuple[Segment, ...]:
    """Segments as given, else rebuilt from the upstream WebVTT or the words (so they survive a merge)."""
    if t.segments:
        return t.segments
    return tuple(Segment(c.start, c.end, c.text) for c in cues(t))


def cues(t: Transcript) -> list[Cue]:
    """Subtitle cues from the best timing the upstream gave: segments, its WebVTT, words, or the whole text."""
    if t.segments:
        return [Cue(s.start, s.end, s.text) for s in t.segments]
    if t.vtt:
        parsed = parse_vtt(t.vtt)
        if parsed:
            return parsed
    words = t.all_words()
    if words:
        return cues_from_words([(w.word, w.start, w.end) for w in words])
    if not t.text:
        return []
    return [Cue(0.0, t.duration if t.duration is not None else 0.0, t.text)]


def duration_of(t: Transcript) -> float:
    if t.duration is not None:
        return t.duration
    ends = [s.end for s in t.segments] + [w.end for w in t.all_words()]
    return max(ends, default=0.0)


def _openai_segments(t: Transcript) -> list[TranscriptionSegment]:
    return [TranscriptionSegment(id=i, seek=round(s.start * 100), start=round(s.start, 3), end=round(s.end, 3),
                                 text=s.text if s.text.startswith(" ") else " " + s.text.strip(), tokens=[],
                                 temperature=s.temperature, avg_logprob=s.avg_logprob,
                                 compression_ratio=s.compression_ratio, no_speech_prob=s.no_speech_prob)
            for i, s in enumerate(_segments_of(t))]


def from_transcript(t: Transcript, req: TranscriptionRequest, *, language: str | None = None) -> tuple[Any, str]:
    """(body, media type) in the requested response_format: a JSON object, or text for text/srt/vtt."""
    fmt = req.response_format
    if fmt == "text":
        return t.text + "\n", "text/plain"
    if fmt == "srt":
        return to_srt(cues(t)), "text/plain"
    if fmt == "vtt":
        return to_vtt(cues(t)), "text/vtt"
    duration = round(duration_of(t), 3)
    usage = DurationUsage(type="duration", seconds=duration)
    if fmt == "json":
        body = TranscriptionJson(text=t.text)
        if req.task == "transcribe":
            body["usage"] = usage
        return body, "application/json"
    verbose = TranscriptionVerbose(task=req.task, language=language_name(language or t.language),
                                   duration=duration, text=t.text)
    granularities = req.timestamp_granularities or ["segment", "word"]
    if "segment" in granularities or req.task == "translate":
        verbose["segments"] = _openai_segments(t)
    words = t.all_words()
    if "word" in granularities and req.task == "transcribe" and words:
        verbose["words"] = [TranscriptionWord(word=w.word.strip(), start=round(w.start, 3), end=round(w.end, 3))
                            for w in words]
    if req.task == "transcribe":
        verbose["usage"] = usage
    return verbose, "application/json"


def to_workers_translation(text: str, source: str, target: str) -> dict[str, Any]:
    """m2m100's input (reference §7): two-letter codes."""
    return {"text": text, "source_lang": source, "target_lang": target}


def with_translated_text(t: Transcript, texts: Sequence[str], language: str) -> Transcript:
    """`t` with each cue's text replaced by its translation (texts[i] belongs to cues(t)[i])."""
    cue_list = cues(t)
    segments = tuple(Segment(c.start, c.end, text) for c, text in zip(cue_list, texts, strict=True))
    joined = " ".join(x.strip() for x in texts if x.strip())
    return Transcript(joined, language, t.duration, segments)
