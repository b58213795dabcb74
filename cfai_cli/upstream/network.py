"""The one way upstream clients reach the network: a transport chosen by `choose_transport`, `--debug` a wrapper.

Clients build each `httpx.Request` themselves and hand it to `handle_async_request` of the transport this
module chose: the one tests or `--offline` pass in, cfai's lean HTTP/1.1 transport, or httpx's own (when
`fast_http = false` or a proxy is configured). No httpx.AsyncClient sits in between: its URL, header and
cookie merging was ~20% of the proxy's CPU (docs/performance.md). Imports httpx, anyio, stdlib, upstream.lean
and upstream.transport.

Whether a connection can be used again after a response is the transport's business alone: closing a
response that was started but not read to its end first reads the little that may be left (a stream's tail
after `[DONE]`), for at most TAIL_SECONDS and TAIL_BYTES, so the connection goes back to the pool instead of
costing a new TCP and TLS handshake. The lean transport does it itself; any other is wrapped here to do the
same. Callers just close what they opened.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator

import httpx

from cfai_cli.upstream.httperrors import describe_http_error
from cfai_cli.upstream.inprocess import InProcess
from cfai_cli.upstream.lean import Lean
from cfai_cli.upstream.transport import TAIL_BYTES, TAIL_SECONDS, LeanTransport, lean_transport, proxies_configured

__all__ = ["LoggingTransport", "choose_transport", "describe_http_error", "shown_headers"]

HTTP_LOG = logging.getLogger("cfai.http")
SECRET_HEADERS = frozenset({"authorization", "cf-aig-authorization", "x-api-key", "api-key", "cookie"})
_BODY_SHOWN = 300  # characters of a request body `--debug` shows


def shown_headers(headers: httpx.Headers) -> str:
    return ", ".join(f"{k}: {'***' if k.lower() in SECRET_HEADERS else v}" for k, v in headers.items())


def choose_transport(given: httpx.AsyncBaseTransport | Lean | None, *, fast_http: bool = True,
                     max_connections: int = 256) -> httpx.AsyncBaseTransport:
    """The transport of one upstream client: `given` (tests, --offline; a plain `Lean` the client already sends
    on gets httpx's seam over its pool), else cfai's lean one, else httpx's own (`fast_http` off, or a proxy
    configured: httpx honours proxies, the lean one does not); wrapped in a LoggingTransport when `--debug`
    turned the cfai.http logger on."""
    if isinstance(given, InProcess):  # --offline's emulator: httpx's own way into the same app
        chosen: httpx.AsyncBaseTransport | None = given.as_httpx()
    elif isinstance(given, Lean) and not isinstance(given, LeanTransport):
        chosen = LeanTransport.sharing(given)
    else:
        chosen = given
    if chosen is None and fast_http:
        chosen = lean_transport(max_connections)
    if chosen is None:
        chosen = _httpx_transport(max_connections)
    # An in-process app (`--offline`'s emulator) answers from memory: no connection to keep, and reading a
    # tail would import anyio's event-loop backend (~85 M instructions, 7 % of `cfai chat --offline hi`).
    if not isinstance(chosen, (LeanTransport, httpx.ASGITransport)):
        chosen = _Draining(chosen)
    return LoggingTransport(chosen) if HTTP_LOG.isEnabledFor(logging.DEBUG) else chosen


def _httpx_transport(max_connections: int) -> httpx.AsyncBaseTransport:
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    if proxies_configured():
        return _EnvironmentProxies(limits)
    return httpx.AsyncHTTPTransport(limits=limits)


class _Draining(httpx.AsyncBaseTransport):
    """Any other transport (httpx's, or one given), its responses' connections kept for reuse when closed
    just short of their end."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _TailRead(response.stream)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class _TailRead(httpx.AsyncByteStream):
    """A body that, closed after some of it was read, first reads what is left (a little, briefly)."""

    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self._inner = inner
        self._chunks: AsyncIterator[bytes] | None = None
        self._reading: AsyncGenerator[bytes, None] | None = None
        self._ended = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        self._reading = reading = self._read()
        return reading

    async def _read(self) -> AsyncGenerator[bytes, None]:
        self._chunks = self._inner.__aiter__()
        async for chunk in self._chunks:
            yield chunk
        self._ended = True

    async def aclose(self) -> None:
        if self._reading is not None:
            # Left at a yield by a reader that stopped (a stream's reader stops at `[DONE]`): closed here, not by
            # the loop's finalizer hook when it is freed (a task, a loop turn and a thread-safe wake-up).
            await self._reading.aclose()
        chunks = self._chunks
        if chunks is not None and not self._ended:
            # An anyio scope, not asyncio.timeout: httpcore shields its release of the connection from anyio
            # cancellation only; a native cancel landing there would leave the connection checked out for good.
            import anyio  # httpcore's own dependency: imported with any transport but the lean one

            read = 0
            try:
                with anyio.move_on_after(TAIL_SECONDS):
                    async for chunk in chunks:
                        read += len(chunk)
                        if read > TAIL_BYTES:
                            break
            except Exception:  # closing follows anyway
                pass
        await self._inner.aclose()


class _EnvironmentProxies(httpx.AsyncBaseTransport):
    """httpx's default transport with the environment's proxies (HTTP(S)_PROXY, ALL_PROXY, NO_PROXY) applied
    the way httpx applies them: only its client picks a proxy per URL, so requests go through one."""

    def __init__(self, limits: httpx.Limits) -> None:
        self._client = httpx.AsyncClient(limits=limits, follow_redirects=False, trust_env=True)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._client.send(request, stream=True)

    async def aclose(self) -> None:
        await self._client.aclose()


class LoggingTransport(httpx.AsyncBaseTransport):
    """`--debug`: each request (line, headers, the start of its body) and its answer (status, timing, headers)
    on the cfai.http logger, secrets shown as ***, JSON bodies only; the wrapped transport does the work."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        HTTP_LOG.debug("-> %s %s {%s}", request.method, request.url, shown_headers(request.headers))
        try:  # JSON bodies only: bytes (images, audio) and streamed multipart bodies are not text to show
            body = request.content if "json" in request.headers.get("content-type", "") else b""
        except httpx.RequestNotRead:
            body = b""
        if body:
            text = body[: _BODY_SHOWN * 4].decode("utf-8", "replace")
            HTTP_LOG.debug("   body %s", text if len(text) <= _BODY_SHOWN else text[:_BODY_SHOWN] + "…")
        started = time.perf_counter()
        response = await self.inner.handle_async_request(request)
        HTTP_LOG.debug("<- %s %s in %.0f ms {%s}", response.status_code, request.url,
                       (time.perf_counter() - started) * 1000, shown_headers(response.headers))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
