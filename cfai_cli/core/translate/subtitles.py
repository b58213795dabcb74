"""SubRip (srt) and WebVTT subtitles from timed cues, cues from words, and cues back out of upstream WebVTT.

Pure: standard library only. Times are seconds as floats; they are rounded once, to whole milliseconds,
so a cue never ends before it starts in the text even when float noise says otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple


class Cue(NamedTuple):
    start: float
    end: float
    text: str


_VTT_TIME = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})$")
_SENTENCE_END = (".", "?", "!", "。", "？", "！")


def timestamp(seconds: float, *, decimal: str = ",") -> str:
    """`HH:MM:SS,mmm` (srt, decimal=",") or `HH:MM:SS.mmm` (vtt, decimal="."); hours never wrap."""
    total_ms = max(0, round(seconds * 1000))
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{ms:03d}"


def _clean(text: str) -> str:
    # A blank line ends a cue in both formats and "-->" marks a timing line in WebVTT: neither may survive.
    lines = [line.strip() for line in text.replace("\r", "").split("\n")]
    return "\n".join(line for line in lines if line).replace("-->", "->")


def _ready(cues: Iterable[Cue]) -> list[tuple[int, int, str]]:
    out = []
    for cue in cues:
        text = _clean(cue.text)
        if not text:
            continue
        start = max(0, round(cue.start * 1000))
        out.append((start, max(start, round(cue.end * 1000)), text))
    return out


def to_srt(cues: Iterable[Cue]) -> str:
    blocks = [f"{i}\n{timestamp(s / 1000)} --> {timestamp(e / 1000)}\n{text}\n"
              for i, (s, e, text) in enumerate(_ready(cues), start=1)]
    return "\n".join(blocks)


def to_vtt(cues: Iterable[Cue]) -> str:
    blocks = [f"{timestamp(s / 1000, decimal='.')} --> {timestamp(e / 1000, decimal='.')}\n{text}\n"
              for s, e, text in _ready(cues)]
    return "WEBVTT\n\n" + "\n".join(blocks)


def parse_vtt_time(value: str) -> float | None:
    match = _VTT_TIME.match(value.strip())
    if match is None:
        return None
    hours, minutes, secs, frac = match.groups()
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(secs) + int(frac.ljust(3, "0")) / 1000


def parse_vtt(text: str) -> list[Cue]:
    """The cues of a WebVTT document (Whisper's `vtt`), tolerant of cue ids, settings and stray blank lines."""
    cues: list[Cue] = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n")):
        lines = [line for line in block.split("\n") if line.strip()]
        for i, line in enumerate(lines):
            if "-->" not in line:
                continue
            left, _, right = line.partition("-->")
            start, end = parse_vtt_time(left), parse_vtt_time(right.strip().split(" ")[0])
            if start is not None and end is not None:
                cues.append(Cue(start, end, "\n".join(lines[i + 1 :]).strip()))
            break
    return [cue for cue in cues if cue.text]


def cues_from_words(words: Sequence[tuple[str, float, float]], *, max_seconds: float = 6.0,
                    max_chars: int = 84) -> list[Cue]:
    """Group timed words into readable cues: break after a sentence, or before one grows too long."""
    cues: list[Cue] = []
    current: list[tuple[str, float, float]] = []

    def flush() -> None:
        if current:
            text = " ".join(w.strip() for w, _, _ in current if w.strip())
            cues.append(Cue(current[0][1], current[-1][2], text))
            current.clear()

    for word, start, end in words:
        if current:
            length = sum(len(w.strip()) + 1 for w, _, _ in current) + len(word.strip())
            if end - current[0][1] > max_seconds or length > max_chars:
                flush()
        current.append((word, start, end))
        if word.strip().endswith(_SENTENCE_END):
            flush()
    flush()
    return cues
