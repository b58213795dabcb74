"""Reproducible failures: the `@cf/cfai/fault-<kind>` models answer the errors of reference §1.3–1.4 and §2.6.

Imports only the standard library and the emulator's wire helpers. Each kind is one row of
`ERRORS` (an error envelope) or one of the broken answers in `run`; `KINDS` lists them all.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from cfai_cli.emulator.asgi import Response, StreamingResponse
from cfai_cli.emulator.wire import EmulatorError, padding, request_uuid, sse_event

PREFIX = "@cf/cfai/fault-"

_CAPACITY = (429, 3040, "AiError: AiError: Capacity temporarily exceeded, please try again.", {"Retry-After": "1"})
# kind -> (HTTP status, Workers AI code, message, headers)
ERRORS: dict[str, tuple[int, int, str, dict[str, str]]] = {
    "429": _CAPACITY,
    "3040": _CAPACITY,
    "4006": (429, 4006, "AiError: AiError: you have used up your daily free allocation of 10,000 neurons, please "
                        "upgrade to Cloudflare's Workers Paid plan if you would like to continue usage.", {}),
    "3036": (429, 3036, "AiError: AiError: Account limited: you have used up your daily free allocation of "
                        "10,000 neurons.", {}),
    "3046": (408, 3046, "AiError: AiError: Request timeout", {}),
    "3006": (413, 3006, "AiError: AiError: Request is too large", {}),
    "5035": (403, 5035, "AiError: AiError: This model requires a Workers Paid plan.", {}),
    # The real code of this one was never captured whole (reference §1.4); 3043 is the emulator's pick.
    "500": (500, 3043, "AiError: AiError: Internal server error", {}),
}
BROKEN = ("5xx-html", "stream-cut", "stream-error", "stream-garbage")
KINDS = (*ERRORS, *BROKEN)

_HTML = (b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway | api.cloudflare.com | Cloudflare</title></head>"
         b"<body><h1>Error 502</h1><p>Bad gateway</p><p>Cloudflare Ray ID: 0000000000000000</p></body></html>\n")


def _partial(seed: bytes) -> Iterator[bytes]:
    for i, word in enumerate(("[offline]", " this", " stream", " breaks")):
        yield sse_event({"response": word, "p": padding(seed, i)})


def run(kind: str, body: Mapping[str, Any], seed: bytes) -> Response:
    """The broken answer for `kind`; raises EmulatorError for the envelope kinds (and unknown kinds)."""
    if kind in ERRORS:
        status, code, message, headers = ERRORS[kind]
        raise EmulatorError(status, code, message, headers=headers)
    stream = body.get("stream") is True
    if kind == "5xx-html":
        return Response(_HTML, status_code=502, media_type="text/html")
    if kind == "stream-cut":
        if not stream:
            # The non-stream analogue: a JSON body cut off mid-way.
            return Response(b'{"result":{"response":"[offline] this answer is cut', media_type="application/json")
        return StreamingResponse(_partial(seed), media_type="text/event-stream")  # no [DONE]
    if kind == "stream-error":
        if not stream:
            raise EmulatorError(*ERRORS["3046"][:3])
        # Mid-stream error format is UNCONFIRMED (reference §14); the emulator sends the error envelope.
        error = {"result": {}, "success": False, "messages": [],
                 "errors": [{"code": 3046, "message": f"AiError: AiError: Request timeout ({request_uuid(seed)})"}]}
        return StreamingResponse(iter([*_partial(seed), sse_event(error)]), media_type="text/event-stream")
    if kind == "stream-garbage":
        if not stream:
            # The non-stream analogue: a success envelope whose result no text model would send.
            return Response(b'{"result":{"unexpected":true},"success":true,"errors":[],"messages":[]}',
                            media_type="application/json")
        return StreamingResponse(iter([*_partial(seed), b'data: {"response": "no closing brace\n\n',
                                       sse_event("[DONE]")]), media_type="text/event-stream")
    raise EmulatorError(400, 5007, f"AiError: No such model: No such model {PREFIX}{kind} or task")
