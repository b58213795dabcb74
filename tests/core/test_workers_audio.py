"""Every speech-recognition result shape (reference §6) parsed into one Transcript."""

from __future__ import annotations

from typing import Any

import pytest

from cfai_cli.core.workers.audio import Segment, Transcript, Word, parse_transcript, parse_translation
from cfai_cli.errors import UpstreamError

WHISPER = {"text": "It is a good day", "word_count": 5,
           "words": [{"word": "It", "start": 0.56, "end": 1.0}, {"word": "is", "start": 1.0, "end": 1.2}],
           "vtt": "WEBVTT\n\n00:00.560 --> 00:01.200\nIt is a good day\n\n"}
TURBO = {"transcription_info": {"language": "fr", "language_probability": 0.97, "duration": 12.3,
                                "duration_after_vad": 11.8},
         "text": " Bonjour à tous. ", "word_count": 3,
         "segments": [{"start": 0.0, "end": 4.2, "text": " Bonjour à tous.", "temperature": 0.0, "avg_logprob": -0.2,
                       "compression_ratio": 1.3, "no_speech_prob": 0.01,
                       "words": [{"word": " Bonjour", "start": 0.0, "end": 0.4}]}],
         "vtt": "WEBVTT\n\n00:00.000 --> 00:04.200\nBonjour à tous.\n\n"}
NOVA = {"metadata": {"duration": 3.5},
        "results": {"channels": [{"detected_language": "en", "alternatives": [
            {"transcript": "hello world", "confidence": 0.9,
             "words": [{"word": "hello", "start": 0.1, "end": 0.5, "confidence": 0.9},
                       {"word": "world", "start": 0.6, "end": 1.0, "confidence": 0.9}]}]}]}}


@pytest.mark.parametrize(("result", "expected"), [
    pytest.param(WHISPER, Transcript("It is a good day", words=(Word("It", 0.56, 1.0), Word("is", 1.0, 1.2)),
                                     vtt=WHISPER["vtt"]), id="whisper"),
    pytest.param({"text": "hello"}, Transcript("hello"), id="whisper-tiny-en text only"),
    pytest.param(TURBO, Transcript(
        "Bonjour à tous.", "fr", 12.3,
        (Segment(0.0, 4.2, " Bonjour à tous.", 0.0, -0.2, 1.3, 0.01, (Word(" Bonjour", 0.0, 0.4),)),),
        vtt=TURBO["vtt"], extra={"language_probability": 0.97, "duration_after_vad": 11.8}), id="large-v3-turbo"),
    pytest.param(NOVA, Transcript("hello world", "en", 3.5, words=(Word("hello", 0.1, 0.5), Word("world", 0.6, 1.0))),
                 id="nova-3"),
    pytest.param({"segments": [{"start": "1.5", "end": 2, "text": "from segments"}, {"start": None, "text": "x"},
                               "junk"], "words": [{"word": "w", "start": 0}, {"word": "ok", "start": 1, "end": 0.5}]},
                 Transcript("from segments", segments=(Segment(1.5, 2.0, "from segments"),),
                            words=(Word("ok", 1.0, 1.0),)), id="lenient: strings, broken items, no text"),
])
def test_parse_transcript(result: dict[str, Any], expected: Transcript) -> None:
    assert parse_transcript(result) == expected


@pytest.mark.parametrize("result", [None, [], {"words": []}, {"results": {"channels": []}}])
def test_no_text_is_the_upstreams_fault(result: Any) -> None:
    with pytest.raises(UpstreamError):
        parse_transcript(result)


def test_shifted_moves_every_time_and_drops_stale_vtt() -> None:
    t = parse_transcript(TURBO).shifted(30.0)
    assert t.segments[0].start == 30.0 and t.segments[0].end == pytest.approx(34.2)
    assert t.segments[0].words[0].start == 30.0 and t.vtt is None
    assert parse_transcript(WHISPER).shifted(10).words[0] == Word("It", 10.56, 11.0)


def test_all_words_prefers_top_level_then_segment_words() -> None:
    assert parse_transcript(WHISPER).all_words()[0].word == "It"
    assert parse_transcript(TURBO).all_words() == (Word(" Bonjour", 0.0, 0.4),)


def test_parse_translation() -> None:
    assert parse_translation({"translated_text": "Hola"}) == "Hola"
    with pytest.raises(UpstreamError):
        parse_translation({"text": "Hola"})
