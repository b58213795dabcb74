"""The emulator's HTTP surface without a web framework: the request it reads, the two responses it answers with,
and the ASGI app around emulator.app's one dispatch function (for httpx.ASGITransport and uvicorn alike).

Imports only the standard library; starlette's form parser only for a multipart/form-data request (flux-2).

Why not Starlette: the emulator has one catch-all route, reads a request's method, path, headers, query and body,
and answers a body or a stream. Measured 2026-12-02 (issue 25, callgrind, PYTHONHASHSEED=0): for it a one-shot
`cfai chat --offline hi` imported starlette, python_multipart and anyio with its event-loop backend, and every
streamed answer went through anyio's task group and worker thread (Starlette's StreamingResponse iterates a
plain iterator in a thread pool and watches for a disconnect beside it). This module, with emulator.app
importing only the modules a text answer needs, took the run from 1,367 to 1,284 M instructions and 472 to 439
modules (and to 1,200 M once cfai's client stopped draining the in-process answer through anyio).
What the emulator used of Starlette is the few lines below, kept to what Starlette sent: the given headers,
`content-length` for a whole body, `content-type` with `; charset=utf-8` for text/* types; a stream stops
when the client hangs up (a slow stream served by uvicorn).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping, MutableMapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

Scope = MutableMapping[str, Any]  # the ASGI types as httpx.ASGITransport states them
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class Request:
    """One HTTP request, its body read whole: what emulator.app's dispatch looks at."""

    def __init__(self, scope: Scope, body: bytes) -> None:
        self.scope = scope
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        # The first of repeated headers, as Starlette's `headers.get`; the last of repeated query parameters, as
        # `dict(request.query_params)`.
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in reversed(scope["headers"])}
        self.query_params = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        self.body = body

    @asynccontextmanager
    async def form(self) -> AsyncIterator[Mapping[str, Any]]:
        """The multipart/form-data fields, parsed by Starlette (the one request type that needs it); the
        spooled uploads are closed on leaving."""
        from starlette.requests import Request as FullRequest

        async def replay() -> Message:
            return {"type": "http.request", "body": self.body, "more_body": False}

        async with FullRequest(self.scope, replay).form() as form:
            yield form


class Response:
    """A whole body (`content` as bytes, or text sent as UTF-8) with its status, headers and media type."""

    def __init__(self, content: bytes | str | None = None, status_code: int = 200,
                 headers: Mapping[str, str] | None = None, media_type: str | None = None) -> None:
        self.status_code = status_code
        self.body = content.encode("utf-8") if isinstance(content, str) else content or b""
        # Lower-case names, and the content type in them as Starlette's `Response.headers` has it (sent after
        # the length, as Starlette sends them).
        self.headers = {key.lower(): value for key, value in (headers or {}).items()}
        self.media_type = media_type
        self._typed = media_type is not None and "content-type" not in self.headers
        if self._typed and media_type is not None:
            text = media_type.startswith("text/") and "charset=" not in media_type.lower()
            self.headers["content-type"] = f"{media_type}; charset=utf-8" if text else media_type

    def raw_headers(self, *, length: bool = True) -> list[tuple[bytes, bytes]]:
        headers = dict(self.headers)
        typed = headers.pop("content-type") if self._typed else None
        bodiless = self.status_code < 200 or self.status_code in (204, 304)
        if length and not bodiless and "content-length" not in headers:
            headers["content-length"] = str(len(self.body))
        if typed is not None:
            headers["content-type"] = typed
        return [(key.encode("latin-1"), value.encode("latin-1")) for key, value in headers.items()]

    async def send(self, send: Send, receive: Receive) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers()})
        await send({"type": "http.response.body", "body": self.body})


class StreamingResponse(Response):
    """A body sent chunk by chunk as `content` yields it (bytes or text). A plain iterator is drained without a
    pause (the emulator's are in memory); an async one may wait between chunks, and stops when the client
    hangs up."""

    def __init__(self, content: Iterable[bytes | str] | AsyncIterable[bytes | str], status_code: int = 200,
                 headers: Mapping[str, str] | None = None, media_type: str | None = None) -> None:
        super().__init__(None, status_code, headers, media_type)
        self.content = content

    async def send(self, send: Send, receive: Receive) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers(length=False)})
        if isinstance(self.content, AsyncIterable):
            hung_up = asyncio.ensure_future(_disconnect(receive))
            try:
                async for chunk in self.content:
                    if hung_up.done():
                        return
                    await send({"type": "http.response.body", "body": _bytes(chunk), "more_body": True})
            finally:
                hung_up.cancel()
        else:
            for chunk in self.content:
                await send({"type": "http.response.body", "body": _bytes(chunk), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _bytes(chunk: bytes | str) -> bytes:
    return chunk.encode("utf-8") if isinstance(chunk, str) else chunk


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


Dispatch = Callable[[Request], Awaitable[Response]]


class App:
    """The ASGI app: reads the whole request, lets `dispatch` answer it, sends the answer. Lifespan events are
    acknowledged (uvicorn sends them); a websocket is refused."""

    def __init__(self, dispatch: Dispatch) -> None:
        self.dispatch = dispatch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1000})
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        response = await self.dispatch(Request(scope, b"".join(chunks)))
        await response.send(send, receive)
