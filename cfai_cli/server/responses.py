"""The proxy's JSON answers: Starlette's JSONResponse, rendered by `core.jsonfast` (the same bytes, faster).

Imports starlette and core. `vouch_error_free` lets a route spare Observe's secret scrubber the scan of a big
answer (server.observe): the scrubber masks secrets in any body holding `"error"`, and looking for it in
33 MB of embeddings took ~10 ms (bench/payload_cpu.py, 2026-12-02).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from starlette import responses
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from cfai_cli.core import jsonfast

# The request's state key (scope["state"]) Observe reads: the route vouched for its answer's body.
ERROR_FREE = "cfai_error_free"


# The headers of every API answer (the routes' and server.errors'), and their encoding done once.
API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
_USUAL_RAW = tuple((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in API_HEADERS.items())


class JSONResponse(responses.JSONResponse):
    def render(self, content: Any) -> bytes:
        return jsonfast.dumps(content)

    def init_headers(self, headers: Mapping[str, str] | None = None) -> None:
        """Starlette's raw headers; for the usual headers and a body that has a length, the same list made from
        their encoding done once (Starlette encodes and lowercases each header, and looks for Content-Length
        and Content-Type among them, per answer: a plain chat 0.754 -> 0.740 M instructions before its
        answer's write, bench/stream_cpu.py --plain --first, 2026-12-02, round 8)."""
        status = self.status_code
        if (headers == API_HEADERS and status >= 200 and status not in (204, 304)
                and self.media_type == "application/json"):
            self.raw_headers = [*_USUAL_RAW, (b"content-length", b"%d" % len(self.body)),
                                (b"content-type", b"application/json")]
        else:
            super().init_headers(headers)


class PiecewiseJSONResponse(JSONResponse):
    """The same bytes as JSONResponse, for an answer whose `key` holds a long list: rendered `step` items at a
    time, each piece sent as it is (Content-Length is their sum), and each item let go once rendered. A whole
    33 MB embeddings answer was rendered beside the 33 MB of vectors it was made from; in pieces, the answer's
    peak memory is about one copy of it (bench/payloads.py, 2026-12-02). Everything is known before the first
    byte: the status and headers are decided, as they are for JSONResponse.

    A piece holding text already written (`jsonfast.RawJson`, `jsonfast.AsciiText`: the vectors' text, an
    image's base64) is only measured here (`jsonfast.measured`) and rendered as it is sent: rendered here, all
    33 MB of pieces were made while the vectors' 16 KiB slices they came from, freed one by one, stayed in the
    allocator's heap (72 MB peak RSS for 32.7 MB read; four images: their text and the answer, twice 5.3 MB).
    A piece whose length comes out other than measured ends the answer (an error, never other bytes)."""

    def __init__(self, content: Mapping[str, Any], key: str, *, step: int = 100,
                 headers: Mapping[str, str] | None = None) -> None:
        items: list[Any] = content[key]
        frame = jsonfast.dumps({**content, key: []})
        # The only place `"key":[]` can be: any quote inside a string is escaped.
        split = frame.index(jsonfast.dumps(key) + b":[]") + len(jsonfast.dumps(key)) + 2
        self.pieces: list[bytes | _Later] = [frame[:split]]
        for start in range(0, len(items), step):
            part = items[start:start + step]
            items[start:start + step] = [None] * len(part)  # the rendered (or measured) items go
            comma = b"," if start else b""
            rendered = jsonfast.measured(part)
            if isinstance(rendered, int):
                self.pieces.append(_Later(comma, part, len(comma) + rendered - 2))
            else:
                self.pieces.append(comma + rendered[1:-1])
        self.pieces.append(frame[split:])
        length = str(sum(piece.length if isinstance(piece, _Later) else len(piece) for piece in self.pieces))
        super().__init__(None, headers={**(headers or {}), "Content-Length": length})

    def render(self, content: Any) -> bytes:
        return b""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        pieces, self.pieces = self.pieces, []
        held = b""  # the short end of a piece sent around views (an image's `"}`), joined with what follows
        for i in range(len(pieces)):
            piece, pieces[i] = pieces[i], b""  # sent pieces go too
            bodies = piece.render() if isinstance(piece, _Later) else [piece]
            del piece
            if held:
                if isinstance(bodies[0], bytes) and len(bodies[0]) < _SHORT:  # the next one's opening, the frame's end
                    bodies[0] = held + bodies[0]
                else:
                    await send({"type": "http.response.body", "body": held, "more_body": True})
                held = b""
            final = i == len(pieces) - 1
            tail = bodies[-1]
            if len(bodies) > 1 and not final and isinstance(tail, bytes) and len(tail) < _SHORT:
                held = tail  # one write fewer for each image (issue 25, round 8)
                bodies.pop()
            del tail
            end = len(bodies) - 1 if final else -1
            for j in range(len(bodies)):
                body, bodies[j] = bodies[j], b""  # a view of an upstream answer: let go once written
                await send({"type": "http.response.body", "body": body, "more_body": j != end})
                del body


_SHORT = 4096  # PiecewiseJSONResponse: the short end of a piece sent around views is joined with what follows


class _Later:
    """Items to render as they are sent, and the length they were measured to have."""

    __slots__ = ("comma", "items", "length")

    def __init__(self, comma: bytes, items: list[Any], length: int) -> None:
        self.comma, self.items, self.length = comma, items, length

    def render(self) -> list[bytes | memoryview]:
        """The items' text, in pieces: an AsciiText holding bytes (an image's base64, a view of the answer it came
        in) is sent as it is, not copied into the rendering, and each RawJson's text (a vector, a view of its
        upstream answer) is copied once, into its piece (jsonfast.pieces)."""
        items, self.items = self.items, []
        parts = jsonfast.pieces(items, lead=self.comma, inner=True)
        del items
        length = sum(len(part) for part in parts)
        if length != self.length:
            raise RuntimeError(f"An answer's piece was measured as {self.length} bytes and rendered as {length}.")
        return parts


def vouch_error_free(request: Request, strings: Iterable[str]) -> None:
    """Mark the answer about to be sent as one without `"error"` in it, when none of `strings` holds it encoded.

    `strings` must be every string of the answer (keys too) but those the route knows hold no quote (base64,
    checked vector text: a quote in JSON text is a string's delimiter or an escaped quote in it, so `"error"`
    can only be part of a string's own encoding). A failed request is scrubbed whatever this says (a status
    >= 400: server.observe).
    """
    if not any(b'"error"' in jsonfast.dumps(text) for text in strings):
        setattr(request.state, ERROR_FREE, True)
