"""Real audio bytes for audio tests, made with the standard library (a test helper, not a test module)."""

from __future__ import annotations

import functools
import io
import math
import struct
import wave


@functools.cache
def tone_wav(seconds: float = 1.0, *, rate: int = 16000, channels: int = 1, hz: float = 440.0) -> bytes:
    """A 16-bit PCM WAV file holding a sine tone."""
    frames = int(seconds * rate)
    samples = (int(8000 * math.sin(2 * math.pi * hz * i / rate)) for i in range(frames))
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", s) * channels for s in samples))
    return out.getvalue()


def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as w:
        return w.getnframes() / w.getframerate()


FAKE_MP3 = b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + bytes(200)


def mp3_frames(count: int, *, header: bytes = b"\xff\xfb\x90\x64", length: int = 417) -> bytes:
    """`count` MPEG-1 Layer III frames (128 kbit/s, 44.1 kHz: 417 bytes, 1152 samples each) of silence-ish."""
    return (header + bytes(length - len(header))) * count
