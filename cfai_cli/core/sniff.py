"""What a blob of bytes is, from its first bytes (magic numbers): an image, audio, text, or other binary.

Pure (stdlib only). The CLI uses it for whatever it reads as a chat input (piped stdin, `cfai chat -a FILE`),
because file names and pipes carry no reliable type: a PNG piped into `cfai chat` must become an image, not
a UnicodeDecodeError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Category = Literal["image", "audio", "text", "binary"]


@dataclass(frozen=True)
class Sniffed:
    category: Category
    mime: str  # image/png, audio/wav, text/plain, application/pdf…
    label: str  # what to call it in a message: "a PNG image", "a PDF"…


_PREFIXES: tuple[tuple[bytes, Sniffed], ...] = (
    (b"\x89PNG\r\n\x1a\n", Sniffed("image", "image/png", "a PNG image")),
    (b"\xff\xd8\xff", Sniffed("image", "image/jpeg", "a JPEG image")),
    (b"GIF87a", Sniffed("image", "image/gif", "a GIF image")),
    (b"GIF89a", Sniffed("image", "image/gif", "a GIF image")),
    (b"fLaC", Sniffed("audio", "audio/flac", "FLAC audio")),
    (b"OggS", Sniffed("audio", "audio/ogg", "Ogg audio")),
    (b"\x1a\x45\xdf\xa3", Sniffed("audio", "audio/webm", "WebM audio")),
    (b"%PDF", Sniffed("binary", "application/pdf", "a PDF")),
    (b"PK\x03\x04", Sniffed("binary", "application/zip", "a zip archive (or an Office document)")),
    (b"\x1f\x8b", Sniffed("binary", "application/gzip", "gzip data")),
    (b"\xfd7zXZ\x00", Sniffed("binary", "application/x-xz", "xz data")),
    (b"(\xb5/\xfd", Sniffed("binary", "application/zstd", "zstd data")),
    (b"7z\xbc\xaf\x27\x1c", Sniffed("binary", "application/x-7z-compressed", "a 7z archive")),
    (b"\x7fELF", Sniffed("binary", "application/x-executable", "an ELF executable")),
    (b"\xcf\xfa\xed\xfe", Sniffed("binary", "application/x-mach-binary", "a Mach-O executable")),
    (b"SQLite format 3\x00", Sniffed("binary", "application/vnd.sqlite3", "an SQLite database")),
    (b"\xd0\xcf\x11\xe0", Sniffed("binary", "application/x-ole-storage", "an old Office document")),
)
_MP3_FRAME = Sniffed("audio", "audio/mpeg", "MP3 audio")
# Magic numbers made of letters only count with the binary byte that follows them, so a text that happens to
# start with "ID3", "BZh" or "MZ" stays text.
_WORDY = ((b"ID3", b"\x02\x03\x04", _MP3_FRAME),
          (b"BZh", b"123456789", Sniffed("binary", "application/x-bzip2", "bzip2 data")),
          (b"MZ", b"\x90\x00\x50", Sniffed("binary", "application/x-msdownload", "a Windows executable")))
_TEXT = Sniffed("text", "text/plain", "text")
_BINARY = Sniffed("binary", "application/octet-stream", "binary data")
_UTF_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


def sniff(data: bytes) -> Sniffed:
    """The kind of `data`: known magic numbers first, then text unless it has NUL or many control bytes."""
    for magic, kind in _PREFIXES:
        if data.startswith(magic):
            return kind
    for magic, after, wordy in _WORDY:
        if data.startswith(magic) and len(data) > len(magic) + 1 and data[len(magic)] in after and (
                magic != b"BZh" or data[4:10] == b"1AY&SY"):
            return wordy
    if data[:4] == b"RIFF" and data[8:12] in (b"WEBP", b"WAVE"):
        webp = data[8:12] == b"WEBP"
        return Sniffed("image", "image/webp", "a WebP image") if webp else Sniffed("audio", "audio/wav", "WAV audio")
    if data[4:8] == b"ftyp":  # ISO media: m4a is audio, the rest (mp4, mov, heic) is not for chat
        brand = data[8:12]
        if brand in (b"M4A ", b"M4B "):
            return Sniffed("audio", "audio/mp4", "M4A audio")
        return Sniffed("binary", "video/mp4", "an MP4/QuickTime/HEIF file")
    if len(data) >= 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0 and data[1] & 0x06:  # MPEG audio frame sync
        return _MP3_FRAME
    head = data[:8192]
    if head.startswith(_UTF_BOMS):
        return _TEXT
    controls = sum(1 for b in head if b < 9 or 13 < b < 32)
    if b"\x00" in head or controls * 10 > len(head):
        return _BINARY
    return _TEXT


def decode_text(data: bytes) -> tuple[str, bool]:
    """`data` as text: UTF-8 (a BOM is honoured), else UTF-8 with U+FFFD replacing what does not decode.
    Returns (text, True) when something had to be replaced, so the caller can warn."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace"), False
    try:
        return data.decode("utf-8-sig"), False
    except UnicodeDecodeError:
        return data.decode("utf-8-sig", errors="replace"), True
