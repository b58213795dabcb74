"""Silent audio in every container Deepgram Aura answers with, each with the real header a decoder checks.

Imports only the standard library. Nothing here is really heard; what matters is that a client (or a test)
reading the bytes finds the format it asked for: RIFF/WAVE, fLaC + STREAMINFO, Ogg pages with OpusHead,
ADTS frames, MPEG frames, or raw little-endian PCM.
"""

from __future__ import annotations

import io
import struct
import wave

MP3_FRAME = b"\xff\xfb\x90\x64" + bytes(413)  # one silent-ish MPEG-1 Layer III frame, 128 kbit/s 44.1 kHz
_MP3_FRAMES_PER_SECOND = 38


def mp3(seconds: float) -> bytes:
    return MP3_FRAME * max(1, int(seconds * _MP3_FRAMES_PER_SECOND))


def pcm(seconds: float, rate: int) -> bytes:
    """16-bit little-endian mono silence."""
    return bytes(2 * int(seconds * rate))


def wav(seconds: float, rate: int, encoding: str = "linear16") -> bytes:
    """A WAVE file: 16-bit PCM, or 8-bit mu-law / A-law (format tags 7 and 6) for those encodings."""
    if encoding == "linear16":
        out = io.BytesIO()
        with wave.open(out, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(pcm(seconds, rate))
        return out.getvalue()
    tag, silence = (7, b"\xff") if encoding == "mulaw" else (6, b"\xd5")
    data = silence * int(seconds * rate)
    fmt = struct.pack("<HHIIHH", tag, 1, rate, rate, 1, 8)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _crc(data: bytes, poly: int, bits: int) -> int:
    """MSB-first CRC with a zero start (FLAC's CRC-8 and CRC-16, Ogg's CRC-32)."""
    top, mask, crc = 1 << (bits - 1), (1 << bits) - 1, 0
    for byte in data:
        crc ^= byte << (bits - 8)
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & mask if crc & top else (crc << 1) & mask
    return crc


def _flac_frame(number: int, samples: int) -> bytes:
    """One frame of mono 16-bit silence: a CONSTANT subframe holding 0 (FLAC format, "FRAME")."""
    # sync + fixed blocksize, blocksize from the 16-bit field after the number, rate from STREAMINFO,
    # mono, 16 bits per sample; the frame number is UTF-8 coded.
    header = b"\xff\xf8\x70\x08" + chr(number).encode("utf-8", "surrogatepass") + struct.pack(">H", samples - 1)
    header += bytes([_crc(header, 0x07, 8)])
    frame = header + b"\x00\x00\x00"  # subframe: CONSTANT, no wasted bits, the sample 0
    return frame + struct.pack(">H", _crc(frame, 0x8005, 16))


def flac(seconds: float, rate: int = 24000) -> bytes:
    """A FLAC stream: `fLaC`, STREAMINFO (mono 16-bit), then frames of 4096 samples of silence."""
    samples, block = max(1, int(seconds * rate)), 4096
    sizes = [block] * (samples // block) + ([samples % block] if samples % block else [])
    frames = [_flac_frame(i, n) for i, n in enumerate(sizes)]
    lengths = [len(f) for f in frames]
    packed = (rate << 44) | (0 << 41) | (15 << 36) | samples  # rate:20, channels-1:3, bits-1:5, samples:36
    info = (struct.pack(">HH", block, block) + min(lengths).to_bytes(3, "big") + max(lengths).to_bytes(3, "big")
            + packed.to_bytes(8, "big") + bytes(16))
    return b"fLaC" + bytes([0x80]) + len(info).to_bytes(3, "big") + info + b"".join(frames)


def _ogg_page(payload: bytes, *, sequence: int, flags: int, granule: int) -> bytes:
    segments = [255] * (len(payload) // 255) + [len(payload) % 255]
    header = (b"OggS" + bytes([0, flags]) + struct.pack("<qIII", granule, 0x63666169, sequence, 0)
              + bytes([len(segments)]) + bytes(segments))
    page = header + payload
    return page[:22] + struct.pack("<I", _crc(page, 0x04C11DB7, 32)) + page[26:]


def ogg_opus(seconds: float) -> bytes:
    """An Ogg stream with the OpusHead and OpusTags pages (48 kHz granules), then the end-of-stream page."""
    head = b"OpusHead" + struct.pack("<BBHIhB", 1, 1, 312, 24000, 0, 0)
    tags = b"OpusTags" + struct.pack("<I", 4) + b"cfai" + struct.pack("<I", 0)
    return (_ogg_page(head, sequence=0, flags=0x02, granule=0) + _ogg_page(tags, sequence=1, flags=0, granule=0)
            + _ogg_page(b"", sequence=2, flags=0x04, granule=int(seconds * 48000)))


def adts(seconds: float) -> bytes:
    """AAC-LC ADTS frames (24 kHz mono), each a 7-byte header and an empty raw block."""
    payload = b"\x00\x00"
    length = 7 + len(payload)
    # sync 0xFFF, MPEG-4, layer 0, no CRC | profile LC, rate index 6 (24 kHz), channel config 1, frame length
    header = bytes([0xFF, 0xF1, (1 << 6) | (6 << 2), (1 << 6) | (length >> 11), (length >> 3) & 0xFF,
                    ((length & 7) << 5) | 0x1F, 0xFC])
    return (header + payload) * max(1, int(seconds * 24000 / 1024))
