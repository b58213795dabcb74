"""WAV (RIFF/WAVE) inspection and splitting, so long recordings can go to Whisper in pieces.

Pure: standard library and cfai_cli.errors. The `fmt ` chunk is copied verbatim into every piece and the
`data` chunk is cut on whole frames, so any fixed-frame encoding (PCM, float, extensible) splits cleanly.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cfai_cli.errors import InvalidRequest


@dataclass(frozen=True, slots=True)
class WavInfo:
    fmt: bytes  # the fmt chunk's payload, verbatim
    channels: int
    sample_rate: int
    byte_rate: int
    block_align: int
    data_offset: int
    data_size: int

    @property
    def duration(self) -> float:
        return self.data_size / self.byte_rate if self.byte_rate else 0.0


def is_wav(data: bytes) -> bool:
    return len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WAVE"


def read_wav(data: bytes) -> WavInfo:
    """The layout of a WAV file; a 400 when it claims to be WAV but is broken."""
    if not is_wav(data):
        raise InvalidRequest("The file is not a WAV (RIFF/WAVE) file.", param="file", code="invalid_audio")
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if chunk_id == b"fmt " and size >= 16:
            fmt = data[body : body + size]
        elif chunk_id == b"data":
            if fmt is None:
                break
            channels, rate, byte_rate, align = struct.unpack_from("<HIIH", fmt, 2)
            if not (channels and rate and byte_rate and align):
                break
            # Streaming writers leave the size at 0 or 0xFFFFFFFF: the data then runs to the end of the file.
            available = len(data) - body
            real = available if size in (0, 0xFFFFFFFF) or size > available else size
            return WavInfo(fmt, channels, rate, byte_rate, align, body, real - real % align)
        pos = body + size + (size & 1)  # chunks are word-aligned
    raise InvalidRequest("The WAV file has no readable `fmt ` and `data` chunks.", param="file",
                         code="invalid_audio")


def _build(fmt: bytes, pcm: bytes) -> bytes:
    fmt_chunk = b"fmt " + struct.pack("<I", len(fmt)) + fmt + (b"\x00" if len(fmt) & 1 else b"")
    data_chunk = b"data" + struct.pack("<I", len(pcm)) + pcm + (b"\x00" if len(pcm) & 1 else b"")
    return b"RIFF" + struct.pack("<I", 4 + len(fmt_chunk) + len(data_chunk)) + b"WAVE" + fmt_chunk + data_chunk


def split_wav(data: bytes, max_bytes: int) -> list[tuple[float, bytes]]:
    """(start offset in seconds, a standalone WAV file) pieces whose audio is at most `max_bytes` each."""
    info = read_wav(data)
    if info.data_size <= max_bytes:
        return [(0.0, data)]
    step = max(info.block_align, max_bytes - max_bytes % info.block_align)
    pcm = data[info.data_offset : info.data_offset + info.data_size]
    return [(start / info.byte_rate, _build(info.fmt, pcm[start : start + step]))
            for start in range(0, len(pcm), step)]
