"""An ASGI app in this process as a lean client (`InProcess`): `--offline`'s emulator answering the Workers AI
client's calls in bytes, without httpx.

Imports the standard library, upstream.lean and upstream.http11. What it hands the app and reads back is what
`httpx.ASGITransport` (httpx 0.29) does, for the requests the lean client sends (`Lean.open`: a head and a body
in bytes): the same scope (method, the path decoded and raw, the query, the headers in the order sent with
lower-case names, the scheme, the server's host and port, ASGITransport's client address), the body as two
messages (the bytes, then an empty last one), `http.disconnect` once the answer is complete, and the answer
read whole (its status, its headers as the app sent them, its body; none for HEAD); an exception the app raises
is raised. `tests/upstream/test_inprocess.py` compares both ways on the emulator, byte for byte.

Calls the Workers AI client builds as httpx requests (multipart, GET: `cfai doctor`'s token check, the model
search) still go through `httpx.ASGITransport` over the same app (`as_httpx`), importing httpx for them only.

Why: `cfai chat --offline hi` imported httpx (with `urllib.request`, `http.client`, the `email` package,
`http.cookiejar`, `mimetypes` and `idna`) only to reach the emulator through `httpx.ASGITransport`, after the
online one-shot stopped importing it (docs/performance.md, "One-shot CLI round 7": 804.5 → 704.8 M instructions,
420 → 358 modules; `cfai chat hi` is 685.4 M).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from cfai_cli.upstream.http11 import Exchange, Key
from cfai_cli.upstream.lean import Lean, LeanBody

if TYPE_CHECKING:
    import httpx

Message = MutableMapping[str, Any]
App = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
               Awaitable[None]]
CLIENT = ("127.0.0.1", 123)  # httpx.ASGITransport's default client address
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _Answered(LeanBody):
    """An answer already whole in memory: no connection behind it."""

    __slots__ = ()

    def __init__(self, lean: Lean, exchange: Exchange) -> None:
        self._pool = lean.pool
        self._conn = None
        self._exchange = self.exchange = exchange
        self._timeout = None
        self._started = False


class InProcess(Lean):
    """A `Lean` whose requests an ASGI app in this process answers; see the module docstring."""

    def __init__(self, app: App) -> None:
        super().__init__(max_connections=1)
        self.app = app

    def as_httpx(self) -> httpx.AsyncBaseTransport:
        """httpx's way to the same app, for the calls built as httpx requests (upstream.network)."""
        import httpx

        return httpx.ASGITransport(app=self.app)

    async def _answer(self, key: Key, head: bytes, body: bytes | None, stream: Any,
                      timeouts: dict[str, float | None], *, head_only: bool) -> LeanBody:
        if body is None:  # a streamed request body (never sent in bytes by the Workers AI client)
            body = b"".join([chunk async for chunk in stream])
        lines = head.split(b"\r\n")
        method, target, _ = lines[0].split(b" ", 2)
        raw_path, _, query = target.partition(b"?")
        headers = []
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(b":")
                headers.append((name.lower(), value.strip(b" \t")))
        scheme, host, port = key
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method.decode("ascii"),
                 "headers": headers, "scheme": scheme, "path": unquote(raw_path.decode("ascii")),
                 "raw_path": raw_path, "query_string": query,
                 "server": (host, None if _DEFAULT_PORTS.get(scheme) == port else port), "client": CLIENT,
                 "root_path": ""}
        exchange = Exchange(head_only)
        exchange.parser = None
        messages = [{"type": "http.request", "body": body, "more_body": True},
                    {"type": "http.request", "body": b"", "more_body": False}]
        complete = asyncio.Event()

        async def receive() -> Message:
            if messages:
                return messages.pop(0)
            await complete.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
                exchange.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
                exchange.headers_done = True
            elif message["type"] == "http.response.body":
                data = message.get("body", b"")
                if data and method != b"HEAD":
                    exchange.chunks.append(bytes(data))
                if not message.get("more_body", False):
                    complete.set()

        await self.app(scope, receive, send)
        assert complete.is_set() and exchange.headers_done, "the app ended without a whole answer"
        exchange.complete = True
        return _Answered(self, exchange)
