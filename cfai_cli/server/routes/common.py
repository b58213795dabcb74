"""Helpers every route uses: reading a size-capped JSON body, and SSE responses with in-band errors.

Imports starlette, core and errors.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from cfai_cli.core.affinity import HEADER as AFFINITY_HEADER
from cfai_cli.core.affinity import check_explicit
from cfai_cli.core.cache import HEADER as CACHE_HEADER
from cfai_cli.core.cache import Mode, request_mode
from cfai_cli.core.openai.base import parse_body
from cfai_cli.core.sse import DONE, encode_sse, encode_sse_all
from cfai_cli.errors import CfaiError, RequestTooLarge, UnsupportedMediaType, UpstreamError
from cfai_cli.server.responses import API_HEADERS
from cfai_cli.server.scope import request_record
from cfai_cli.service.chat_stream import EventStream
from cfai_cli.service.context import Context

log = logging.getLogger("cfai.server")


_CACHE = CACHE_HEADER.encode("latin-1")
_AFFINITY = AFFINITY_HEADER.encode("latin-1")


def header(request: Request, name: bytes) -> str | None:
    """The request's first `name` header (`name` in lower case), as `request.headers.get` gives it, read from the
    scope's raw list: without Starlette's Headers object, its Mapping.get and, for an absent header, the KeyError
    raised and caught inside it (three or four reads a chat request, one or two of them of absent headers: a plain chat
    1.010 -> 1.002 M instructions, bench/stream_cpu.py --plain under callgrind, 2026-12-02, round 7)."""
    headers: list[tuple[bytes, bytes]] = request.scope["headers"]
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def request_context(request: Request) -> Context:
    """The service context for this request: it works for the request's record (key policy, usage, and what
    it may do with the response cache)."""
    ctx: Context = request.app.state.ctx
    record = request_record(request.scope)
    if ctx.settings.cache.enabled and record.cache_mode is None:
        record.cache_mode = cache_mode(request)
    return ctx.for_request(record)


def cache_mode(request: Request) -> Mode | None:
    """What the request may do with the response cache (core.cache.request_mode): from its route, its key's
    `--cache` flag and its `x-cfai-cache` header."""
    if request.method != "POST":
        return None
    path: str = request.scope["path"]
    key = request.scope.get("state", {}).get("cfai_key")
    return request_mode(request.app.state.ctx.settings.cache, route=path[4:] if path.startswith("/v1/") else path[1:],
                        header=header(request, _CACHE), key_opted_in=bool(key and key.policy.cache))


def chat_context(request: Request) -> Context:
    """`request_context` for the chat routes: the record also carries the client's own x-session-affinity
    (checked here: a bad one is a 400 naming the header), which wins over the one cfai derives (core.affinity)."""
    ctx = request_context(request)
    ctx.record.affinity = check_explicit(header(request, _AFFINITY))
    return ctx


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused past `limit` bytes. Its messages are taken from `request.receive` as Starlette's
    `Request.stream` takes them (the body's parts until one says no more follows; a disconnect raises
    ClientDisconnect), without that async generator of its own (its hooks, each part's step through it): a plain
    chat's answer 0.740 -> 0.730 M instructions, bench/stream_cpu.py --plain --first, 2026-12-02, round 8. The body is
    read once: nothing reads it through the Request again."""
    declared = header(request, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"The request body is larger than the proxy's limit of {limit} bytes.")
    data = bytearray()
    receive = request.receive
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            data += message.get("body", b"")
            if len(data) > limit:
                raise RequestTooLarge(f"The request body is larger than the proxy's limit of {limit} bytes.")
            if not message.get("more_body", False):
                return bytes(data)
        elif kind == "http.disconnect":
            raise ClientDisconnect()


def media_type(header: str | None) -> tuple[str, dict[str, str]]:
    """`type/subtype` lowercased and the parameters (names lowercased, quotes removed) of a Content-Type."""
    kind, *params = (header or "").split(";")
    found: dict[str, str] = {}
    for param in params:
        name, _, value = param.partition("=")
        found[name.strip().lower()] = value.strip().strip('"')
    return kind.strip().lower(), found


_NOT_JSON = ("This endpoint takes a JSON body sent with 'Content-Type: application/json', not {}. With curl, add "
             "-H 'Content-Type: application/json' (-d alone sends application/x-www-form-urlencoded).")


def check_json_content_type(header: str | None) -> None:
    """415 unless the body is declared JSON in UTF-8: `application/json` or `application/*+json`, charset
    utf-8 or none. No header at all is refused too: browsers post text/plain, form and header-less bodies
    to any site without asking (no CORS preflight), so only a JSON type proves the caller meant JSON."""
    kind, params = media_type(header)
    is_json = kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json")
                                              and len(kind) > len("application/+json"))
    if not is_json:
        raise UnsupportedMediaType(_NOT_JSON.format(repr(kind[:80]) if kind else "a body without a Content-Type"))
    charset = params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(f"JSON on the wire must be UTF-8; send 'Content-Type: application/json' "
                                   f"and the body encoded as UTF-8, not charset={charset[:40]}.")


async def read_json(request: Request) -> dict[str, Any]:
    """The JSON object of a request declared as JSON (415 otherwise), within the proxy's JSON size limit."""
    check_json_content_type(header(request, b"content-type"))
    limit: int = request.app.state.max_json_bytes
    return parse_body(await read_body(request, limit))


ErrorEvents = Callable[[CfaiError], Sequence[Mapping[str, Any]]]
DROPPED_TOOLS_HEADER = "x-cfai-dropped-tools"


def dropped_tools_headers(dropped: Sequence[str], route: str) -> dict[str, str]:
    """The headers that tell a client which hosted tools (web_search, mcp, ...) were left out, logged once."""
    if not dropped:
        return {}
    log.warning("%s: left out tools of type %s (no Workers AI equivalent)", route, ", ".join(dropped))
    return {DROPPED_TOOLS_HEADER: ",".join(dropped)}


def _chat_error(exc: CfaiError) -> Sequence[Mapping[str, Any]]:
    return [exc.to_openai()]


class EventStreamResponse(StreamingResponse):
    """Starlette's StreamingResponse, watching for the client hanging up at a quarter of the cost.

    Starlette runs each stream in an anyio task group with a second task listening for the disconnect:
    ~46 µs a response (py-spy put anyio at ~6% of a streamed request). Here the listener is a plain task
    that cancels an anyio cancel scope around the stream (~11 µs). The cancellation is still anyio's, so
    the shields that keep connection clean-up from being interrupted are respected, and the stream ends
    as before: the upstream response is closed and its connection freed (tests/reliability/test_disconnect.py).
    The answer's events are closed when the response ends, however it ends (read or not, client there or not),
    inside the scope and shielded from its cancellation: their clean-up closes the upstream responses.

    The listener and its scope start with the answer's first body write, not before: the events' first batch was
    read before the response was made (service.chat_stream.prime), so up to that write nothing waits on the
    upstream, and a client gone meanwhile is seen by the listener at once (its `receive` gives the disconnect).
    An answer read at once leaves in that one write and needs neither (a 20-chunk stream's first write
    1.377 -> 1.343 M instructions, bench/stream_cpu.py --first under callgrind, 2026-12-02, round 8).
    """

    def __init__(self, events: EventStream[Any], *, done: bool, named: bool, on_error: ErrorEvents,
                 headers: Mapping[str, str]) -> None:
        # `__call__` below is this class's own: it writes the events' batches itself (`_write`: a 20-chunk
        # stream's first write 1.128 -> 1.099 M instructions, bench/stream_cpu.py --first under callgrind,
        # 2026-12-02, round 10), so Starlette's body iterator is given nothing and never read. Its __init__
        # still sets the response's attributes: leaving it out saved ~3 k instructions, not worth depending on
        # which attributes a Starlette release sets there.
        self.events = events
        self._batches = events.batches()
        self._done, self._named, self._on_error = done, named, on_error
        self._after: list[bytes] | None = None  # once the events have ended: what follows them ([DONE], or errors)
        super().__init__((), media_type="text/event-stream", headers=headers)

    def init_headers(self, headers: Mapping[str, str] | None = None) -> None:
        if headers is _SSE_HEADERS:  # the usual stream's: rendered once (sse_response)
            self.raw_headers = [*_SSE_RAW]
        else:
            super().init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if await self._first(send):
                await self._rest(receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.events.aclose()

    async def _first(self, send: Send) -> bool:
        """StreamingResponse.stream_response up to the first body write, with the answer's last bytes in the
        message that ends the response: each ASGI send is a socket write (through the layer's send) and a
        wake-up of the client. `[DONE]` is always the last item, so holding it back delays nothing (stream c=1:
        5 writes an answer -> 3, bench/streams.py); and once the events' stream is `ending` (its last batch came
        with the upstream's end: what follows is closing the upstream response and counting the usage, no
        upstream read), its last batches wait for that end too, so an answer read at once leaves in one write,
        head included. True when the answer goes on after this write (`_rest` writes the rest)."""
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        return await self._write(send, first=True)

    async def _write(self, send: Send, *, first: bool) -> bool:
        """The stream's bytes, a write per batch of events (one per upstream read, not one per token); `[DONE]`
        (when `done`) after a stream that ended well, in-band error events and no `[DONE]` after one that failed
        (a client must never take a broken answer for a complete one). The last ones (`[DONE]`, and all of them
        once the stream is `ending`) are held for the message that ends the response; with `first`, only up to
        the first write (True: more to come). The batches are encoded here, not by an async generator of their
        own: one generator less a stream (its first-iteration hook, a step through it per batch, its close)."""
        tail = b""
        events = self.events
        while True:
            after = self._after
            if after is None:
                try:
                    batch = await self._batches.__anext__()
                    chunk = b"".join(map(self._encode, batch)) if self._named else encode_sse_all(batch)
                except StopAsyncIteration:
                    self._after = [DONE] if self._done else []
                    continue
                except CfaiError as exc:
                    self._after = [self._encode(event) for event in self._on_error(exc)]
                    continue
                except Exception as exc:  # the stream's boundary: anything else is still reported in-band
                    log.error("stream failed: %s", type(exc).__name__, exc_info=(type(exc), exc, exc.__traceback__))
                    failed = UpstreamError("The stream failed inside the proxy.", code="internal_error")
                    self._after = [self._encode(event) for event in self._on_error(failed)]
                    continue
            elif after:
                chunk = after.pop(0)
            else:
                break
            if chunk is DONE or events.ending:
                tail += chunk
                continue
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if first:
                return True
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        return False

    def _encode(self, event: Mapping[str, Any]) -> bytes:
        return encode_sse(event, event=str(event["type"]) if self._named and "type" in event else None)

    async def _rest(self, receive: Receive, send: Send) -> None:
        """The answer after its first write, as `_first` writes, cancelled if the client hangs up."""
        with anyio.CancelScope() as cancel:
            async def listen() -> None:
                try:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                except Exception:  # a receive channel that breaks: the client is gone as far as we can tell
                    pass
                cancel.cancel()  # no effect once the stream has ended and left the scope

            listener = asyncio.get_running_loop().create_task(listen())
            try:
                await self._write(send, first=False)
            finally:
                listener.cancel()


_SSE_HEADERS = {**API_HEADERS, "X-Accel-Buffering": "no"}


def _rendered(headers: Mapping[str, str]) -> tuple[tuple[bytes, bytes], ...]:
    """A stream's raw headers as Starlette's StreamingResponse renders `headers` (its Content-Type added)."""
    response = StreamingResponse.__new__(StreamingResponse)
    response.media_type = "text/event-stream"
    response.init_headers(headers)
    return tuple(response.raw_headers)


# Every stream without headers of its own has these: rendered once, not per answer (~15k instructions).
_SSE_RAW = _rendered(_SSE_HEADERS)


def sse_response(events: EventStream[Any], *, done: bool = True, named: bool = False,
                 on_error: ErrorEvents = _chat_error, headers: Mapping[str, str] | None = None) -> EventStreamResponse:
    """An SSE answer. Chat style by default (bare `data:`, `[DONE]`, an error body on failure); the
    Responses API sets `named` (an `event:` line per event), `done=False` and its own `on_error` events."""
    return EventStreamResponse(events, done=done, named=named, on_error=on_error,
                               headers={**_SSE_HEADERS, **headers} if headers else _SSE_HEADERS)
