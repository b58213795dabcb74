"""MP3 (MPEG audio) frame walking and splitting, so long MP3 recordings can go to Whisper in pieces.

Pure: standard library only. MPEG frames are self-delimiting, so a file cuts cleanly between frames; each
piece's start time is the count of samples before it (exact for CBR and VBR alike). ID3 tags are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

_BITRATES = {  # kbit/s by (MPEG-1?, layer) -> index 0..14
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_SAMPLE_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
MIN_FRAMES = 4  # fewer consecutive frames than this and it is not an MP3 we trust ourselves to cut


@dataclass(frozen=True, slots=True)
class Frame:
    offset: int
    length: int
    samples: int
    sample_rate: int


def parse_header(data: bytes, pos: int) -> Frame | None:
    """The frame starting at `pos`, or None when the four bytes there are no valid MPEG audio header."""
    if pos + 4 > len(data) or data[pos] != 0xFF or data[pos + 1] & 0xE0 != 0xE0:
        return None
    version, layer_bits = (data[pos + 1] >> 3) & 3, (data[pos + 1] >> 1) & 3
    bitrate_index, rate_index, padding = data[pos + 2] >> 4, (data[pos + 2] >> 2) & 3, (data[pos + 2] >> 1) & 1
    if version == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None  # reserved values, or "free format", which has no computable frame length
    mpeg1, layer = version == 3, 4 - layer_bits
    bitrate = _BITRATES[(mpeg1, layer)][bitrate_index] * 1000
    rate = _SAMPLE_RATES[version][rate_index]
    if layer == 1:
        return Frame(pos, (12 * bitrate // rate + padding) * 4, 384, rate)
    samples = 1152 if layer == 2 or mpeg1 else 576
    return Frame(pos, samples // 8 * bitrate // rate + padding, samples, rate)


def _skip_id3(data: bytes) -> int:
    if data[:3] != b"ID3" or len(data) < 10:
        return 0
    size = (data[6] & 0x7F) << 21 | (data[7] & 0x7F) << 14 | (data[8] & 0x7F) << 7 | (data[9] & 0x7F)
    return 10 + size + (10 if data[5] & 0x10 else 0)


def frames(data: bytes) -> list[Frame] | None:
    """Every frame of an MP3 file, or None when it does not look like one (then it goes up whole)."""
    pos, out = _skip_id3(data), list[Frame]()
    while pos < len(data):
        frame = parse_header(data, pos)
        if frame is None or pos + frame.length > len(data):
            if len(out) < MIN_FRAMES and data[pos : pos + 3] != b"TAG":
                return None
            break  # trailing ID3v1 tag, garbage, or a truncated last frame: the audio ends here
        out.append(frame)
        pos += frame.length
    return out if len(out) >= MIN_FRAMES else None


def duration(found: list[Frame]) -> float:
    return sum(f.samples / f.sample_rate for f in found)


def split_mp3(data: bytes, found: list[Frame], max_bytes: int) -> list[tuple[float, bytes]]:
    """(start offset in seconds, standalone MP3 bytes) pieces of at most `max_bytes` each (one frame at least)."""
    pieces: list[tuple[float, bytes]] = []
    start_time, elapsed, first = 0.0, 0.0, found[0].offset
    end = first
    for frame in found:
        if frame.offset + frame.length - first > max_bytes and end > first:
            pieces.append((start_time, data[first:end]))
            first, start_time = frame.offset, elapsed
        end = frame.offset + frame.length
        elapsed += frame.samples / frame.sample_rate
    pieces.append((start_time, data[first:end]))
    return pieces
