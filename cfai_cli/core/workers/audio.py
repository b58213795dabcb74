"""Workers AI speech-recognition results, every shape, parsed into one typed Transcript (reference §6).

Pure: standard library and cfai_cli.errors. whisper / whisper-tiny-en answer {text, word_count, words, vtt};
whisper-large-v3-turbo adds transcription_info and segments (with words inside); nova-3 answers Deepgram's
{results: {channels: [{alternatives: [...]}]}}. Lenient in: a broken word or segment is dropped, not fatal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from cfai_cli.errors import UpstreamError


@dataclass(frozen=True, slots=True)
class Word:
    word: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Segment:
    start: float
    end: float
    text: str
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0
    words: tuple[Word, ...] = ()


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    language: str | None = None
    duration: float | None = None
    segments: tuple[Segment, ...] = ()
    words: tuple[Word, ...] = ()
    vtt: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def all_words(self) -> tuple[Word, ...]:
        """Top-level words (whisper) or the words inside segments (whisper-large-v3-turbo)."""
        return self.words or tuple(w for s in self.segments for w in s.words)

    def seconds(self) -> float:
        """How long the audio was: its duration where known (the file's own, or as the model said), else
        where its last segment or word ends (0 when nothing says: silence, or a model that gives no times)."""
        if self.duration is not None:
            return max(0.0, self.duration)
        ends = [s.end for s in self.segments] + [w.end for w in self.all_words()]
        return max(0.0, max(ends, default=0.0))

    def shifted(self, offset: float) -> Transcript:
        """The same transcript with every time moved by `offset` seconds (a later chunk of a long file)."""
        if not offset:
            return self

        def word(w: Word) -> Word:
            return Word(w.word, w.start + offset, w.end + offset)

        return replace(self, words=tuple(word(w) for w in self.words), vtt=None, segments=tuple(
            replace(s, start=s.start + offset, end=s.end + offset, words=tuple(word(w) for w in s.words))
            for s in self.segments))


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _words(items: Any) -> tuple[Word, ...]:
    out = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping):
            continue
        text = item.get("word", item.get("punctuated_word"))
        start, end = _number(item.get("start")), _number(item.get("end"))
        if isinstance(text, str) and start is not None and end is not None:
            out.append(Word(text, start, max(start, end)))
    return tuple(out)


def _segments(items: Any) -> tuple[Segment, ...]:
    out = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping):
            continue
        start, end, text = _number(item.get("start")), _number(item.get("end")), item.get("text")
        if start is None or end is None or not isinstance(text, str):
            continue
        out.append(Segment(start, max(start, end), text,
                           temperature=_number(item.get("temperature")) or 0.0,
                           avg_logprob=_number(item.get("avg_logprob")) or 0.0,
                           compression_ratio=_number(item.get("compression_ratio")) or 0.0,
                           no_speech_prob=_number(item.get("no_speech_prob")) or 0.0,
                           words=_words(item.get("words"))))
    return tuple(out)


def _deepgram(result: Mapping[str, Any]) -> Transcript:
    channels = result.get("results", {}).get("channels") if isinstance(result.get("results"), Mapping) else None
    alternatives = channels[0].get("alternatives") if isinstance(channels, list) and channels and isinstance(
        channels[0], Mapping) else None
    best = alternatives[0] if isinstance(alternatives, list) and alternatives else {}
    if not isinstance(best, Mapping) or not isinstance(best.get("transcript"), str):
        raise UpstreamError("Workers AI answered the transcription without a transcript.")
    words = tuple(Word(w.word, w.start, w.end) for w in _words(best.get("words")))
    language = channels[0].get("detected_language") if isinstance(channels, list) else None
    metadata = result.get("metadata")
    duration = _number(metadata.get("duration")) if isinstance(metadata, Mapping) else None
    return Transcript(best["transcript"], language if isinstance(language, str) else None, duration, words=words)


def parse_transcript(result: Any) -> Transcript:
    """Any speech-recognition result as a Transcript; an answer with no text at all is the upstream's fault."""
    if not isinstance(result, Mapping):
        raise UpstreamError("Workers AI answered the transcription with something other than an object.")
    if "results" in result and "text" not in result:
        return _deepgram(result)
    segments = _segments(result.get("segments"))
    text = result.get("text")
    if not isinstance(text, str):
        if not segments:
            raise UpstreamError("Workers AI answered the transcription without `text`.")
        text = "".join(s.text for s in segments)
    info = result.get("transcription_info")
    info = info if isinstance(info, Mapping) else {}
    language = info.get("language", result.get("language"))
    vtt = result.get("vtt")
    return Transcript(
        text=text.strip(),
        language=language if isinstance(language, str) and language else None,
        duration=_number(info.get("duration", result.get("duration"))),
        segments=segments,
        words=_words(result.get("words")),
        vtt=vtt if isinstance(vtt, str) and vtt.strip() else None,
        extra={k: v for k, v in info.items() if k not in ("language", "duration")},
    )


def parse_translation(result: Any) -> str:
    """m2m100's `{translated_text}` (reference §7)."""
    if isinstance(result, Mapping) and isinstance(result.get("translated_text"), str):
        return str(result["translated_text"])
    raise UpstreamError("Workers AI answered the translation without `translated_text`.")
