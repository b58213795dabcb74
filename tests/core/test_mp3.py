"""MP3 frame walking and splitting: header table, ID3 tags, garbage, and exact piece offsets."""

from __future__ import annotations

import pytest

from cfai_cli.core.mp3 import Frame, duration, frames, parse_header, split_mp3
from tests.audio_fixtures import mp3_frames


@pytest.mark.parametrize(("header", "frame"), [
    (b"\xff\xfb\x90\x64", Frame(0, 417, 1152, 44100)),  # MPEG-1 Layer III 128k 44.1 kHz
    (b"\xff\xfb\x92\x64", Frame(0, 418, 1152, 44100)),  # + padding
    (b"\xff\xfb\xe4\x00", Frame(0, 960, 1152, 48000)),  # 320k 48 kHz
    (b"\xff\xf3\x80\x00", Frame(0, 208, 576, 22050)),  # MPEG-2 Layer III 64k 22.05 kHz
    (b"\xff\xe3\x80\x00", Frame(0, 417, 576, 11025)),  # MPEG-2.5 Layer III 64k 11.025 kHz
    (b"\xff\xfd\x90\x00", Frame(0, 522, 1152, 44100)),  # MPEG-1 Layer II, index 9 = 160k
    (b"\xff\xff\x90\x00", Frame(0, 312, 384, 44100)),  # MPEG-1 Layer I, index 9 = 288k
])
def test_headers(header: bytes, frame: Frame) -> None:
    assert parse_header(header, 0) == frame


@pytest.mark.parametrize("header", [
    b"\xff\xfb\x00\x00",  # free format
    b"\xff\xfb\xf0\x00",  # bad bitrate
    b"\xff\xfb\x9c\x00",  # reserved sample rate
    b"\xff\xeb\x90\x00",  # reserved version
    b"\xff\xf9\x90\x00",  # reserved layer
    b"\xfe\xfb\x90\x00", b"\xff\xfb\x90",
])
def test_invalid_headers(header: bytes) -> None:
    assert parse_header(header, 0) is None


def test_frames_skip_id3_and_stop_at_tags() -> None:
    id3 = b"ID3\x04\x00\x00\x00\x00\x01\x00" + bytes(128)  # syncsafe size 128
    found = frames(id3 + mp3_frames(10) + b"TAG" + bytes(125))
    assert found is not None and len(found) == 10 and found[0].offset == 138
    assert duration(found) == pytest.approx(10 * 1152 / 44100)
    truncated = frames(mp3_frames(10) + b"\xff\xfb\x90\x64" + bytes(10))
    assert truncated is not None and len(truncated) == 10


@pytest.mark.parametrize("data", [b"", b"OggS" + bytes(5000), mp3_frames(3), bytes(100) + mp3_frames(20)])
def test_not_an_mp3_we_can_cut(data: bytes) -> None:
    assert frames(data) is None


def test_split_offsets_are_exact_sample_counts() -> None:
    data = mp3_frames(100)
    found = frames(data)
    assert found is not None
    pieces = split_mp3(data, found, 417 * 30 + 5)
    assert [len(p) // 417 for _, p in pieces] == [30, 30, 30, 10]
    assert [round(o, 6) for o, _ in pieces] == [round(i * 30 * 1152 / 44100, 6) for i in range(4)]
    assert b"".join(p for _, p in pieces) == data
    one_each = split_mp3(data, found, 10)  # a piece always holds at least one frame
    assert [p for _, p in one_each] == [data[i * 417 : (i + 1) * 417] for i in range(100)]
    assert one_each[99][0] == pytest.approx(99 * 1152 / 44100)
