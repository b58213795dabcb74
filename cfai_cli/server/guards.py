"""Cheap protections around every response: security headers, and a cap on requests in flight.

Imports starlette and errors. The cap answers 503 with Retry-After at once instead of queueing without
bound, so a flood cannot pile up upstream connections and memory.
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import Message, Scope

from cfai_cli.errors import Overloaded
from cfai_cli.server.errors import error_response

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


_RAW_DEFAULTS = tuple((name.lower().encode("latin-1"), value.encode("latin-1"))
                      for name, value in {**SECURITY_HEADERS, "Cache-Control": "no-store"}.items())


def secure(message: Message) -> None:
    """The security headers an answer's start (`http.response.start`) lacks, added to it: every answer, errors
    and 404s included. Raw header tuples, prepared once: this runs on every answer."""
    raw = list(message.get("headers", ()))
    have = {name.lower() for name, _ in raw}
    raw += [(name, value) for name, value in _RAW_DEFAULTS if name not in have]
    message["headers"] = raw


class ConcurrencyCap:
    """Requests in flight (all but /health), counted by server.front's layer around each; `refusal` is the answer
    for one past the limit."""

    def __init__(self, *, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    def refusal(self, scope: Scope) -> Response | None:
        if self.in_flight < self.limit:
            return None
        error = Overloaded(f"The proxy is answering {self.limit} requests already; try again shortly.",
                           retry_after=1)
        response = error_response(error, scope)
        # The request body is left unread, so the connection must not be reused for another request.
        response.headers["Connection"] = "close"
        return response
