"""Cheap protections around every response: security headers, and a cap on requests in flight.

Imports starlette and errors. The cap answers 503 with Retry-After at once instead of queueing without
bound, so a flood cannot pile up upstream connections and memory.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Raw header tuples, prepared once: this runs on every answer.
                raw = list(message.get("headers", ()))
                have = {name.lower() for name, _ in raw}
                raw += [(name, value) for name, value in _RAW_DEFAULTS if name not in have]
                message["headers"] = raw
            await send(message)

        await self.app(scope, receive, with_headers)


class ConcurrencyCap:
    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/health":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            error = Overloaded(f"The proxy is answering {self.limit} requests already; try again shortly.",
                               retry_after=1)
            response = error_response(error, scope)
            # The request body is left unread, so the connection must not be reused for another request.
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
