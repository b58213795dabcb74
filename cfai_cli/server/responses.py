"""The proxy's JSON answers: Starlette's JSONResponse, rendered by `core.jsonfast` (the same bytes, faster).

Imports starlette and core. `vouch_error_free` lets a route spare Observe's secret scrubber the scan of a big
answer (server.observe): the scrubber masks secrets in any body holding `"error"`, and looking for it in
33 MB of embeddings took ~10 ms (bench/payload_cpu.py, 2026-12-02).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette import responses
from starlette.requests import Request

from cfai_cli.core import jsonfast

# The request's state key (scope["state"]) Observe reads: the route vouched for its answer's body.
ERROR_FREE = "cfai_error_free"


class JSONResponse(responses.JSONResponse):
    def render(self, content: Any) -> bytes:
        return jsonfast.dumps(content)


def vouch_error_free(request: Request, strings: Iterable[str]) -> None:
    """Mark the answer about to be sent as one without `"error"` in it, when none of `strings` holds it encoded.

    `strings` must be every string of the answer (keys too) but those the route knows hold no quote (base64,
    checked vector text: a quote in JSON text is a string's delimiter or an escaped quote in it, so `"error"`
    can only be part of a string's own encoding). A failed request is scrubbed whatever this says (a status
    >= 400: server.observe).
    """
    if not any(b'"error"' in jsonfast.dumps(text) for text in strings):
        setattr(request.state, ERROR_FREE, True)
