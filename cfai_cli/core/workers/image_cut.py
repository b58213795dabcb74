"""An image model's JSON answer with its base64 image cut out as bytes, so the rest is all that is parsed.

Pure: standard library and core. Workers AI's image models answer `{"result": {"image": "<base64>"}, ...}`,
~1.3 MB for a 1024x1024 JPEG. Parsing that document made a 1.3 MB Python string (orjson, 0.4 ms quiet and
3 ms under load per image, the largest cost of an images request after the base64 check; bench/payloads.py,
issue 25, 2026-12-01); here the text between the quotes is taken as it is, checked to be canonical base64,
and only the few hundred bytes around it are parsed, with a sentinel in its place that must come back as
`result.image` (anything else, and the whole document is parsed as before). The text is checked and decoded
through a memoryview, not copied out first (one 1.3 MB copy less an image; issue 25, round 7).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cfai_cli.core.workers.envelope import decode_binary_result
from cfai_cli.core.workers.raw_member import value_start

# The standard base64 alphabet, deleted with bytes.translate to see whether anything else is left: 0.44 ms for
# 1.3 MB of text against 1.8 ms for the regex `[A-Za-z0-9+/]*={0,2}` (9 ms under load).
BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_KEY = b'"image"'
# Put where the image was: a string no image model sends (it holds NUL characters), JSON-escaped.
_SENTINEL = "\x00cfai image\x00"
_SENTINEL_JSON = b"\\u0000cfai image\\u0000"


_STEP = 64 * 1024  # a memoryview is checked a piece at a time (bytes.translate takes bytes): a small copy each


def canonical_base64(text: bytes | memoryview) -> bool:
    """Standard-alphabet base64, padded, nothing else (no whitespace, no URL-safe letters): text any client's
    decoder reads the same way, so it can be handed on as it came."""
    size = len(text)
    if not size or size % 4:
        return False
    tail = bytes(text[-2:])
    data = text[:size - (len(tail) - len(tail.rstrip(b"=")))]  # at most two `=`; any other is not in the alphabet
    if isinstance(data, bytes):
        return not data.translate(None, BASE64_ALPHABET)
    return not any(bytes(data[i:i + _STEP]).translate(None, BASE64_ALPHABET) for i in range(0, len(data), _STEP))



def cut_image(body: bytes | bytearray) -> tuple[bytes, memoryview] | None:
    """(the document with its first `"image"` member's value replaced by the sentinel, that value) when the
    value is canonical base64 between plain quotes; None otherwise. A quote inside a JSON string is escaped,
    so `"image"` followed by a colon is a member name wherever it is; which member it was is for the caller
    to check (the sentinel must come back as result.image). The first, not the last: the name comes before
    its 1 MB value, so searching from the end would read the whole image first (1 ms under load)."""
    quote = value_start(body, _KEY)
    if quote < 0:
        return None
    if body[quote:quote + 1] != b'"':
        return None
    start = quote + 1
    end = body.find(b'"', start)
    if end < 0:
        return None
    view = memoryview(body)
    text = view[start:end]  # no backslash in base64: the first quote closes the string
    if not canonical_base64(text):
        return None
    return b"".join((view[:start], _SENTINEL_JSON, view[end:])), text


def decode_image_result(status: int, content_type: str, body: bytes | bytearray, headers: Mapping[str, str], *,
                        model: str | None = None) -> tuple[bytes | None, str, Any, memoryview | None]:
    """`decode_binary_result`, plus the result's image as canonical base64 text when it was one (taken from
    the bytes as they came, not parsed): (bytes or None, content type, result, image or None). The image is a
    view of `body` (ASCII), also put as `result.image`: not copied out into a str, it can be sent on to the
    client as it came (server.routes.images; four 1.3 MB images, issue 25, round 8)."""
    cut = cut_image(body) if status < 400 and body[:1] == b"{" else None
    if cut is not None:
        rest, text = cut
        try:
            raw, kind, result = decode_binary_result(status, content_type, rest, headers, model=model)
        except Exception:  # the cut changed what the document says: judge the whole of it below
            raw, result = b"", None
        if raw is None and isinstance(result, dict) and result.get("image") == _SENTINEL:
            result["image"] = text
            return None, kind, result, text
    # Judged whole as before; an answer read into one buffer (upstream.lean's read_buffer) as bytes, as before.
    whole = bytes(body) if isinstance(body, bytearray) else body
    raw, kind, result = decode_binary_result(status, content_type, whole, headers, model=model)
    return raw, kind, result, None
