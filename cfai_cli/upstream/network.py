"""The one way upstream clients reach the network: a transport chosen by `choose_transport`, `--debug` a wrapper.

Clients build each `httpx.Request` themselves and hand it to `handle_async_request` of the transport this
module chose: the one tests or `--offline` pass in, cfai's lean HTTP/1.1 transport, or httpx's own (when
`fast_http = false` or a proxy is configured). No httpx.AsyncClient sits in between: its URL, header and
cookie merging was ~20% of the proxy's CPU (docs/performance.md). Imports httpx, stdlib, upstream.transport.
"""

from __future__ import annotations

import logging
import time

import httpx

from cfai_cli.upstream.transport import lean_transport, proxies_configured

HTTP_LOG = logging.getLogger("cfai.http")
SECRET_HEADERS = frozenset({"authorization", "cf-aig-authorization", "x-api-key", "api-key", "cookie"})
_BODY_SHOWN = 300  # characters of a request body `--debug` shows


def shown_headers(headers: httpx.Headers) -> str:
    return ", ".join(f"{k}: {'***' if k.lower() in SECRET_HEADERS else v}" for k, v in headers.items())


def choose_transport(given: httpx.AsyncBaseTransport | None, *, fast_http: bool = True,
                     max_connections: int = 256) -> httpx.AsyncBaseTransport:
    """The transport of one upstream client: `given` (tests, --offline), else cfai's lean one, else httpx's own
    (`fast_http` off, or a proxy configured: httpx honours proxies, the lean one does not); wrapped in a
    LoggingTransport when `--debug` turned the cfai.http logger on."""
    chosen = given
    if chosen is None and fast_http:
        chosen = lean_transport(max_connections)
    if chosen is None:
        chosen = _httpx_transport(max_connections)
    return LoggingTransport(chosen) if HTTP_LOG.isEnabledFor(logging.DEBUG) else chosen


def _httpx_transport(max_connections: int) -> httpx.AsyncBaseTransport:
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    if proxies_configured():
        return _EnvironmentProxies(limits)
    return httpx.AsyncHTTPTransport(limits=limits)


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
