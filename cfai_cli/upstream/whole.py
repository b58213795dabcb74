"""An upstream answer read whole, within a cap.

A JSON, image or audio answer is held in memory while it is decoded, and until this cap nothing bounded how much
a misbehaving upstream (or something between it and cfai) could make the proxy hold for one request: only the
answer's head was capped (http11.MAX_RESPONSE_HEAD_BYTES), an image fetched by URL (fetch.MAX_IMAGE_BYTES) and
other providers' error pages. The largest answers cfai reads whole are an embeddings batch (~1.6 MB for 100
bge-base vectors as text; docs/performance.md, "Big payloads") and an image (a flux JPEG as ~1.3 MB of base64, an
SDXL PNG of 1-2 MB): MAX_ANSWER_BYTES is ~40 times the largest. A declared Content-Length beyond it is refused
before the body is read; an undeclared one is counted as it arrives (decoded bytes, on httpx's way: a small
compressed answer cannot expand past it either). Streams are read piece by piece and capped per event
(core.sse.MAX_EVENT_CHARS). Imports errors only (httpx for types).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from cfai_cli.errors import UpstreamAnswerTooLarge

if TYPE_CHECKING:
    import httpx

MAX_ANSWER_BYTES = 64 * 1024 * 1024


def too_large(limit: int | None = None) -> UpstreamAnswerTooLarge:
    limit = MAX_ANSWER_BYTES if limit is None else limit
    return UpstreamAnswerTooLarge(
        f"The upstream answer is larger than {size_words(limit)}, the most cfai reads whole; it was dropped. "
        "Ask for less in one request (fewer inputs or images).")


def size_words(limit: int) -> str:
    """A cap in words: "64 MiB", or its bytes when it is no whole number of MiB."""
    mib = 1024 * 1024
    return f"{limit // mib} MiB" if limit % mib == 0 else f"{limit:,} bytes"


def check_declared(headers: Mapping[str, str], limit: int | None = None) -> None:
    """Refuse an answer whose Content-Length says it is beyond `limit`, before its body is read."""
    limit = MAX_ANSWER_BYTES if limit is None else limit
    declared = headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise too_large(limit)


async def aread(response: httpx.Response, limit: int | None = None) -> bytes:
    """`response.aread()` within `limit` bytes (decoded), for the answers read through httpx's objects."""
    limit = MAX_ANSWER_BYTES if limit is None else limit
    check_declared(response.headers, limit)
    parts: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)
