"""OpenAI audio wire models: transcription/translation form fields, the speech request, and what we emit.

Pure: pydantic and the standard library. Transcription requests arrive as multipart forms, whose values are
all strings, so their model is lax on types ("0.2" is a temperature); the speech request is JSON and strict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

from pydantic import ConfigDict, Field, field_validator

from cfai_cli.core.openai.base import WireModel

TranscriptFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
TRANSCRIPT_FORMATS: tuple[str, ...] = ("json", "text", "srt", "vtt", "verbose_json")
SPEECH_FORMATS: tuple[str, ...] = ("mp3", "opus", "aac", "flac", "wav", "pcm")


@dataclass(frozen=True, slots=True)
class AudioFile:
    """The uploaded audio: its bytes and what the client said it is."""

    data: bytes
    filename: str = "audio"
    content_type: str = "application/octet-stream"


class TranscriptionRequest(WireModel):
    """Form fields of /v1/audio/transcriptions and /v1/audio/translations (the file travels beside it).

    `task` is ours: "translate" for the translations route. `target_language` is cfai's extension: any
    m2m100 language code; the transcript is translated into it after Whisper has done its part.
    """

    model_config = ConfigDict(strict=False, extra="allow", populate_by_name=True)

    model: str
    language: str | None = None
    prompt: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    response_format: TranscriptFormat = "json"
    timestamp_granularities: list[Literal["word", "segment"]] | None = None
    target_language: str | None = None
    task: Literal["transcribe", "translate"] = "transcribe"

    @field_validator("language", "target_language")
    @classmethod
    def _language_code(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        code = value.strip().lower()
        if not code.replace("-", "").replace("_", "").isalpha() or len(code) > 12:
            raise ValueError("expected a language code such as 'en', 'fr' or 'pt-BR'")
        return code


class SpeechRequest(WireModel):
    """POST /v1/audio/speech (JSON)."""

    model: str
    input: str = Field(min_length=1, max_length=4096)
    voice: str | dict[str, Any] = "alloy"
    instructions: str | None = None
    response_format: SpeechFormat = "mp3"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    stream_format: Literal["sse", "audio"] | None = None

    def voice_name(self) -> str:
        if isinstance(self.voice, dict):
            return str(self.voice.get("id") or "alloy")
        return self.voice


# ---- responses ------------------------------------------------------------------------------------


class DurationUsage(TypedDict):
    type: Literal["duration"]
    seconds: float


class TranscriptionJson(TypedDict):
    text: str
    usage: NotRequired[DurationUsage]


class TranscriptionWord(TypedDict):
    word: str
    start: float
    end: float


class TranscriptionSegment(TypedDict):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class TranscriptionVerbose(TypedDict):
    task: str
    language: str
    duration: float
    text: str
    segments: NotRequired[list[TranscriptionSegment]]
    words: NotRequired[list[TranscriptionWord]]
    usage: NotRequired[DurationUsage]
