"""Wire-level helpers of the emulator: envelopes, the error exception, tokens, SSE bytes and hashing.

Imports only the standard library and emulator.asgi (its responses). Everything that looks random on the real
service (request uuids, the `p` padding, ids) is derived from a hash of the request, so answers are reproducible.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

from cfai_cli.emulator.asgi import Response, StreamingResponse

# A fixed `created` for every chat.completion: the emulator never reads a clock.
CREATED = 1767225600  # 2026-01-01T00:00:00Z

_PIECE = re.compile(r"\s*\S+")
_WORD = re.compile(r"\S+")
_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


class EmulatorError(Exception):
    """One Cloudflare error envelope to answer with.

    `ai_error` messages get the real service's trailing request uuid, and `result: {}` as Workers AI
    inference errors carry; platform errors (auth, routing) have `result: null`.
    """

    def __init__(self, status: int, code: int, message: str, *, ai_error: bool = True,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.ai_error = ai_error
        self.headers = dict(headers or {})


def bad_input(detail: str) -> EmulatorError:
    """The 400/5006 JSON-schema validation failure, worded like the real `AiError: Bad input: Error: …`."""
    return EmulatorError(400, 5006, f"AiError: Bad input: Error: {detail}")


# ---- tokens ------------------------------------------------------------------------------------


def pieces(text: str) -> list[str]:
    """The emulator's tokens: each whitespace-separated word with the whitespace before it.

    Joining the pieces gives the text back (trailing whitespace aside), so streams and truncation
    stay exact; one piece counts as one token everywhere (usage, max_tokens).
    """
    return _PIECE.findall(text)


def count_words(text: str) -> int:
    return len(_WORD.findall(text))


# ---- determinism -------------------------------------------------------------------------------


def digest(*parts: str | bytes) -> bytes:
    h = hashlib.blake2b(digest_size=32)
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode("utf-8"))
        h.update(b"\x00")
    return h.digest()


def request_uuid(seed: bytes) -> str:
    """A uuid-looking request id like the one Workers AI appends to its error messages."""
    return str(uuid.UUID(bytes=digest(b"uuid", seed)[:16], version=4))


def short_id(prefix: str, seed: bytes) -> str:
    return prefix + digest(prefix, seed).hex()[:24]


def nth_seed(seed: bytes, index: int) -> bytes:
    """A seed for the index-th of several things (tool calls); the first keeps the seed itself."""
    return seed if index == 0 else seed + index.to_bytes(2, "big")


def padding(seed: bytes, index: int) -> str:
    """The `p` field of native stream events: opaque, of varying length, here reproducible."""
    raw = digest(seed, str(index))
    length = 1 + raw[0] % 24
    return "".join(_ALPHABET[b % len(_ALPHABET)] for b in raw[1 : 1 + length])


# ---- bodies ------------------------------------------------------------------------------------


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status_code=status, media_type="application/json",
                    headers=dict(headers or {}))


def envelope(result: Any) -> dict[str, Any]:
    return {"result": result, "success": True, "errors": [], "messages": []}


def error_response(error: EmulatorError, seed: bytes) -> Response:
    message = f"{error.message} ({request_uuid(seed)})" if error.ai_error else error.message
    body: dict[str, Any] = {"result": {} if error.ai_error else None, "success": False,
                            "errors": [{"code": error.code, "message": message}], "messages": []}
    return json_response(body, error.status, error.headers)


def sse_event(data: Any) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()


def sse_response(events: Iterable[Any], *, done: bool = True, delay: float = 0.0) -> StreamingResponse:
    """An SSE body, one event per chunk, ending with `data: [DONE]` unless `done` is False; `delay` seconds
    before each event make a slow model (the `[emulator:slow]` trigger)."""

    def body() -> Iterator[bytes]:
        for event in events:
            yield sse_event(event)
        if done:
            yield sse_event("[DONE]")

    async def slow_body() -> AsyncIterator[bytes]:
        for event in body():
            await asyncio.sleep(delay)
            yield event

    return StreamingResponse(slow_body() if delay else body(), media_type="text/event-stream",
                             headers={"cache-control": "no-cache"})
