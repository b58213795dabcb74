"""The app's one middleware layer: every request's way in and out through the proxy's own pieces, in order.

Imports starlette and the pieces' modules. Each piece keeps its rules in its own module; this layer calls them
in the order they ran as seven separate ASGI middleware, outermost first:

1. the body deadline and drain (server.body), for a request whose head declares a body;
2. CORS (Starlette's CORSMiddleware: its preflight answer and its headers), only when origins are configured;
3. the security headers (server.guards.secure), on every answer, errors and 404s included;
4. the loopback guard (server.loopback), only without auth (websockets are checked too);
5. usage rows, metrics, the x-cfai-* headers, secret masking, budget and TPM charges (server.observe), for all
   but probes, scrapes and the page's static files;
6. the cap on requests in flight (server.guards.ConcurrencyCap), for all but /health;
7. key authentication, scopes, budgets, rate limits and the x-ratelimit-* headers (server.auth), only with auth
   and not for open paths.

A request's `_Exchange` remembers which pieces it has passed, and its one `send` applies theirs to each message
in the order the wrapped sends did, innermost first: so a refusal goes out through the pieces before the one
that refused it only, as through the outer layers (a loopback refusal is not observed, a CORS preflight carries
no security headers), and the app's answer through all of them. Lifespan messages pass straight through.

Why one layer (issue 25, 2026-12-02): as seven layers, a plain chat request made seven coroutine calls on its
way in and went through three wrapped `send`s (four for a limited key) and two wrapped `receive`s (closures
made per request), each message through every one. One layer and one `send` cost ~20 k instructions (2 %)
less of a plain chat request's 1.02 M in process, and as much of a stream's (callgrind; docs/performance.md,
"One middleware layer").
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cfai_cli.errors import CfaiError
from cfai_cli.server.auth import KeyAuth
from cfai_cli.server.body import BodyGuard, _Upload
from cfai_cli.server.errors import error_response
from cfai_cli.server.guards import ConcurrencyCap, secure
from cfai_cli.server.loopback import LoopbackOnly
from cfai_cli.server.observe import Observe, Watch


class _Exchange:
    """One HTTP request's way through the layer: the pieces it has passed so far, and its one `receive` and
    `send`, which apply theirs."""

    __slots__ = ("cors", "extra", "front", "raw_receive", "raw_send", "secure", "upload", "watch")

    def __init__(self, front: Front, receive: Receive, send: Send, upload: _Upload | None) -> None:
        self.front = front
        self.raw_receive = receive
        self.raw_send = send
        self.upload = upload
        self.cors: Headers | None = None  # the request's headers, once past CORS (when it is configured)
        self.secure = False
        self.watch: Watch | None = None
        self.extra: list[tuple[bytes, bytes]] | None = None  # the key's x-ratelimit-* headers

    async def receive(self) -> Message:
        upload = self.upload
        if upload is not None:
            message = await self.front.body.receive(upload, self.raw_receive)
        else:
            message = await self.raw_receive()
        if self.watch is not None:
            Observe.received(self.watch, message)
        return message

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.extra:
                KeyAuth.limit_headers(message, self.extra)
            if self.watch is not None:
                self.front.observe.starting(self.watch, message)
            if self.secure:
                secure(message)
            if self.cors is not None:
                assert self.front.cors is not None
                await self.front.cors.send(message, self.sent, self.cors)
                return
        elif kind == "http.response.body" and self.watch is not None and self.front.observe.body(self.watch, message):
            await self.front.observe.charge_budget(self.watch)
        await self.sent(message)

    async def sent(self, message: Message) -> None:
        """The last step of `send` (the body guard's), also CORS's `send` after it has added its headers."""
        upload = self.upload
        if upload is not None and not upload.finished:
            message = BodyGuard.sending(upload, message)
        await self.raw_send(message)


class Front:
    """The one layer (see the module's docstring); the pieces are made by create_app and given to it."""

    def __init__(self, app: ASGIApp, *, body: BodyGuard, observe: Observe, cap: ConcurrencyCap,
                 cors: dict[str, Any] | None = None, loopback: LoopbackOnly | None = None,
                 auth: KeyAuth | None = None) -> None:
        self.app = app
        self.body = body
        self.observe = observe
        self.cap = cap
        # Starlette's own CORS rules, called as functions (its preflight answer, its `send`); never as a layer.
        self.cors = CORSMiddleware(app, **cors) if cors is not None else None
        self.loopback = loopback
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            loopback = self.loopback
            if loopback is not None and scope["type"] == "websocket" and loopback.refusal(scope["headers"]):
                return  # closed unanswered: the server refuses the upgrade
            await self.app(scope, receive, send)
            return
        upload = self.body.begin(scope)
        exchange = _Exchange(self, receive, send, upload)
        if upload is None:
            await self._through(scope, exchange)
            return
        try:
            await self._through(scope, exchange)
        finally:
            self.body.end(upload)
        await self.body.finish(upload, receive, send)

    async def _through(self, scope: Scope, exchange: _Exchange) -> None:
        receive: Receive = exchange.receive
        send: Send = exchange.send
        cors = self.cors
        if cors is not None:
            headers = Headers(scope=scope)
            if "origin" in headers and scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
                await cors.preflight_response(request_headers=headers)(scope, receive, send)
                return
            exchange.cors = headers
        exchange.secure = True
        if self.loopback is not None:
            refusal = self.loopback.refusal(scope["headers"])
            if refusal is not None:
                await error_response(refusal, scope)(scope, receive, send)
                return
        watch = exchange.watch = self.observe.begin(scope)
        if watch is None and exchange.upload is None:
            receive = exchange.raw_receive  # nothing to count or time
        try:
            cap = self.cap
            capped = scope["path"] != "/health"
            if capped:
                overloaded = cap.refusal(scope)
                if overloaded is not None:
                    await overloaded(scope, receive, send)
                    return
                cap.in_flight += 1
            try:
                auth = self.auth
                if auth is None or auth.is_open(scope):
                    await self.app(scope, receive, send)
                    return
                try:
                    record, exchange.extra = await auth.admit(scope)
                except CfaiError as error:
                    await error_response(error, scope)(scope, receive, send)
                    return
                auth.granted(scope, record)
                try:
                    await self.app(scope, receive, send)
                finally:
                    auth.leave(record)
            finally:
                if capped:
                    cap.in_flight -= 1
        finally:
            if watch is not None:
                await self.observe.end(watch)
