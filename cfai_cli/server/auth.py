"""Who may call the proxy: key authentication, scopes per route, model patterns and rate limits.

Imports starlette, anyio, store, core and errors; pure ASGI middleware in front of every route but
/health (whose `?detail=1` needs an admin key). Keys are checked against the hashed store on every
request (through a cache that any commit to the database drops), so revoking or expiring a key takes
effect at once, even in a running server. Keys are never accepted in query strings.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping

import anyio
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cfai_cli.core import jsonfast
from cfai_cli.core.catalog import resolve_model
from cfai_cli.errors import (
    AuthenticationError,
    CfaiError,
    InvalidRequest,
    PermissionDenied,
    RateLimited,
    RequestTooLarge,
)
from cfai_cli.server.errors import error_response
from cfai_cli.server.routes.health import HEALTH_PATHS, wants_detail
from cfai_cli.server.routes.ui import OPEN_PATHS as UI_OPEN_PATHS
from cfai_cli.store.keys import CacheUnavailable, KeyRecord, KeyStore
from cfai_cli.store.limits import RateLimiter

# The browser page and its static files carry no data; its data endpoints (/ui/api/*) need a key.
OPEN_PATHS = frozenset({"/health", "/v1/health", "/openapi.json", "/v1/openapi.json", *UI_OPEN_PATHS})
_SCOPES = (("chat/", "chat"), ("responses", "chat"), ("completions", "chat"), ("tokenize", "chat"),
           ("embeddings", "embeddings"),
           ("images/", "images"), ("audio/", "audio"), ("models", "models"), ("route-check", "models"),
           ("metrics", "admin"), ("health", "admin"),
           ("ui/api/models", "models"), ("ui/api/usage", "admin"))
_MULTIPART_MODEL = re.compile(rb'name="model"\r\n(?:[^\r\n]*\r\n)*\r\n([^\r\n]{1,200})\r\n')


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


def scope_for(path: str) -> str | None:
    """The scope a route needs (None for paths that are not endpoints: they answer 404 anyway)."""
    tail = path[4:] if path.startswith("/v1/") else path[1:]
    return next((scope for prefix, scope in _SCOPES if tail.startswith(prefix)), None)


def requested_model(body: bytes, content_type: str) -> str | None:
    if content_type.startswith("multipart/form-data"):
        match = _MULTIPART_MODEL.search(body)
        return match.group(1).decode("utf-8", "replace") if match else None
    try:
        data = jsonfast.loads(body)
    except (ValueError, RecursionError):
        return None
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) else None


class KeyAuth:
    def __init__(self, app: ASGIApp, keys: KeyStore, limiter: RateLimiter, *, aliases: Mapping[str, str],
                 max_body: int, open_prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.keys = keys
        self.cache = keys.cache()
        self.limiter = limiter
        self.aliases = aliases
        self.max_body = max_body
        # Paths anyone may GET, e.g. hosted images whose unguessable URL is the credential.
        self.open_prefixes = open_prefixes

    def _open(self, scope: Scope) -> bool:
        if scope["path"] in HEALTH_PATHS and wants_detail(scope.get("query_string", b"")):
            return False  # the operator's view of /health: an admin key, like /metrics
        return scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS" or bool(
            self.open_prefixes and scope["method"] in ("GET", "HEAD") and scope["path"].startswith(self.open_prefixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._open(scope):
            await self.app(scope, receive, send)
            return
        try:
            record, extra_headers = await self._admit(scope)
            if record.policy.models and scope["method"] == "POST":
                receive = await self._check_model(scope, receive, record)
        except CfaiError as error:
            await error_response(error)(scope, receive, send)
            return
        scope.setdefault("state", {})["cfai_key"] = record

        if not extra_headers:  # the usual case: no wrapper on every message
            await self.app(scope, receive, send)
            return

        async def with_limit_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(extra_headers)
            await send(message)

        await self.app(scope, receive, with_limit_headers)

    async def _admit(self, scope: Scope) -> tuple[KeyRecord, dict[str, str]]:
        key = presented_key(scope["headers"])
        if key is None:
            raise AuthenticationError(
                "You didn't provide an API key. Send 'Authorization: Bearer <key>' with a key made by `cfai keygen`.",
                code="missing_api_key")
        try:
            record = self.cache.verify(key)  # on the loop: microseconds, and revocation still counts at once
        except CacheUnavailable:
            record = await anyio.to_thread.run_sync(self.keys.verify, key)
        if record is None:
            raise AuthenticationError("Incorrect, revoked or expired API key. Make one with `cfai keygen`.")
        # Known from here on, so a refusal below (scope, model, rate) is logged against the key.
        scope.setdefault("state", {})["cfai_key"] = record
        needed = scope_for(scope["path"])
        if needed is not None and needed not in record.policy.scopes:
            raise PermissionDenied(
                f"This key may not use the {needed} endpoints (its scopes: {', '.join(sorted(record.policy.scopes))}).",
                code="insufficient_scope")
        if not record.policy.limited:
            return record, {}
        decision = await anyio.to_thread.run_sync(
            lambda: self.limiter.admit(record.id, record.policy, now=time.time()))
        if not decision.allowed:
            error = RateLimited(f"Rate limit reached: {decision.reason}. Try again in {decision.retry_after:.0f} s.",
                                retry_after=decision.retry_after, code="rate_limit_exceeded")
            error.headers = decision.headers
            raise error
        return record, decision.headers

    async def _check_model(self, scope: Scope, receive: Receive, record: KeyRecord) -> Receive:
        """Read the body once to see which model is asked for, then hand the same bytes on."""
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise RequestTooLarge(f"The request body is larger than the proxy's limit of {self.max_body} bytes.")
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        content_type = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
        name = requested_model(body, content_type)
        if name is not None:
            try:
                resolved = resolve_model(name, self.aliases)
            except InvalidRequest:
                resolved = name
            if not record.policy.allows_model(name, resolved):
                raise PermissionDenied(f"This key may not use the model {name!r}.", param="model",
                                       code="model_not_allowed")
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay
