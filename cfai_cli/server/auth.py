"""Bearer-key authentication for the proxy, as pure ASGI middleware in front of every route but /health.

Imports starlette, store and errors. Keys are checked against the hashed key store on every request,
so a revoked key stops working at once, even in a running server. Keys are never accepted in query strings.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from cfai_cli.errors import AuthenticationError
from cfai_cli.server.errors import error_response
from cfai_cli.store.keys import KeyStore

OPEN_PATHS = frozenset({"/health", "/v1/health"})


def presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key from `Authorization: Bearer`, `api-key` (Azure-style) or `x-api-key`."""
    found: dict[bytes, bytes] = {}
    for name, value in headers:
        if name in (b"authorization", b"api-key", b"x-api-key"):
            found.setdefault(name, value)
    auth = found.get(b"authorization")
    if auth is not None:
        scheme, _, token = auth.decode("latin-1").strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    for name in (b"api-key", b"x-api-key"):
        if name in found and found[name].strip():
            return found[name].decode("latin-1").strip()
    return None


class KeyAuth:
    def __init__(self, app: ASGIApp, keys: KeyStore, open_prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.keys = keys
        # Paths anyone may GET, e.g. hosted images whose unguessable URL is the credential.
        self.open_prefixes = open_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS" or (
                self.open_prefixes and scope["method"] in ("GET", "HEAD")
                and scope["path"].startswith(self.open_prefixes)):
            await self.app(scope, receive, send)
            return
        key = presented_key(scope["headers"])
        if key is None:
            error = AuthenticationError(
                "You didn't provide an API key. Send 'Authorization: Bearer <key>' with a key made by `cfai keygen`.",
                code="missing_api_key")
        elif self.keys.verify(key) is None:
            error = AuthenticationError("Incorrect API key provided. Make one with `cfai keygen`.")
        else:
            await self.app(scope, receive, send)
            return
        await error_response(error)(scope, receive, send)
