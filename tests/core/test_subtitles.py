"""Subtitle formatting: timestamps (hours, rounding to ms, commas vs dots), srt/vtt bodies, edge cases."""

from __future__ import annotations

import pytest

from cfai_cli.core.translate.subtitles import Cue, cues_from_words, parse_vtt, parse_vtt_time, timestamp, to_srt, to_vtt


@pytest.mark.parametrize(("seconds", "srt", "vtt"), [
    (0, "00:00:00,000", "00:00:00.000"),
    (1.5, "00:00:01,500", "00:00:01.500"),
    (59.9994, "00:00:59,999", "00:00:59.999"),
    (59.9996, "00:01:00,000", "00:01:00.000"),  # rounds up across the minute
    (61.0005, "00:01:01,000", "00:01:01.000"),  # round-half-even on the float; never a 4th digit
    (3599.9999, "01:00:00,000", "01:00:00.000"),
    (3723.042, "01:02:03,042", "01:02:03.042"),
    (100 * 3600 + 1, "100:00:01,000", "100:00:01.000"),  # hours never wrap
    (-0.2, "00:00:00,000", "00:00:00.000"),  # negative noise clamps to zero
    (0.0004, "00:00:00,000", "00:00:00.000"),
])
def test_timestamps(seconds: float, srt: str, vtt: str) -> None:
    assert timestamp(seconds) == srt
    assert timestamp(seconds, decimal=".") == vtt


def test_srt_numbers_cues_and_separates_with_blank_lines() -> None:
    cues = [Cue(0, 1.25, " Hello. "), Cue(1.25, 3723.5, "World")]
    assert to_srt(cues) == ("1\n00:00:00,000 --> 00:00:01,250\nHello.\n\n"
                            "2\n00:00:01,250 --> 01:02:03,500\nWorld\n")


def test_vtt_has_header_and_dots() -> None:
    assert to_vtt([Cue(0.5, 2, "Hi")]) == "WEBVTT\n\n00:00:00.500 --> 00:00:02.000\nHi\n"


@pytest.mark.parametrize("cues", [[], [Cue(0, 1, "")], [Cue(0, 1, "  \n ")]])
def test_empty_cues_are_dropped(cues: list[Cue]) -> None:
    assert to_srt(cues) == ""
    assert to_vtt(cues) == "WEBVTT\n\n"


def test_numbering_skips_dropped_cues_and_text_cannot_break_the_format() -> None:
    out = to_srt([Cue(0, 1, ""), Cue(1, 2, "a\n\n\nb"), Cue(2, 3, "x --> y")])
    assert out == "1\n00:00:01,000 --> 00:00:02,000\na\nb\n\n2\n00:00:02,000 --> 00:00:03,000\nx -> y\n"


def test_end_never_before_start() -> None:
    assert "00:00:02,000 --> 00:00:02,000" in to_srt([Cue(2.0, 1.0, "backwards")])


@pytest.mark.parametrize(("value", "seconds"), [
    ("00:00:01.500", 1.5), ("01:02:03.042", 3723.042), ("02:03.5", 123.5), ("00:00:01,250", 1.25), ("nope", None),
])
def test_parse_vtt_time(value: str, seconds: float | None) -> None:
    assert parse_vtt_time(value) == (pytest.approx(seconds) if seconds is not None else None)


def test_parse_vtt_round_trips_and_tolerates_ids_and_settings() -> None:
    text = ("WEBVTT\r\n\r\n1\r\n00:00.000 --> 00:01.500 align:start\r\nHello there\r\n\r\n"
            "00:00:01.500 --> 00:00:03.000\nGeneral\nKenobi\n\n\n00:00:03.000 --> 00:00:04.000\n\n")
    assert parse_vtt(text) == [Cue(0.0, 1.5, "Hello there"), Cue(1.5, 3.0, "General\nKenobi")]
    cues = [Cue(0, 1.2, "one"), Cue(1.2, 3661.001, "two")]
    assert parse_vtt(to_vtt(cues)) == cues


def test_words_group_at_sentence_ends_and_length() -> None:
    words = [("Hi", 0.0, 0.3), ("there.", 0.3, 0.6), ("Next", 1.0, 1.2), ("one", 1.2, 1.4)]
    assert cues_from_words(words) == [Cue(0.0, 0.6, "Hi there."), Cue(1.0, 1.4, "Next one")]
    long = [(f"w{i}", i * 1.0, i * 1.0 + 0.5) for i in range(10)]
    grouped = cues_from_words(long, max_seconds=3.0)
    assert [c.text for c in grouped] == ["w0 w1 w2", "w3 w4 w5", "w6 w7 w8", "w9"]
    assert cues_from_words([]) == []
