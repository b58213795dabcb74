"""httpx's seam around the lean HTTP/1.1 client (upstream.lean): `LeanTransport` is a `Lean` that is also an
`httpx.AsyncBaseTransport`, so the clients that build httpx requests (multipart bodies, query strings, the other
upstreams, image fetches; tests through `httpx.AsyncClient(transport=...)`) keep httpx's request building,
headers, decoding and exceptions, and only the wire work is cfai's. `LeanTransport.sharing` puts the seam over a
`Lean` a client already sends on, with one pool between them. Imports httpx, upstream.lean, upstream.http11 and
the standard library only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

import httpx

from cfai_cli.upstream.http11 import request_head
from cfai_cli.upstream.lean import TAIL_BYTES, TAIL_SECONDS, Lean, LeanBody
from cfai_cli.upstream.netenv import default_ssl_context, proxies_configured

__all__ = ["TAIL_BYTES", "TAIL_SECONDS", "LeanTransport", "default_ssl_context", "lean_transport",
           "proxies_configured"]


def lean_transport(max_connections: int) -> httpx.AsyncBaseTransport | None:
    """A LeanTransport for an upstream client, or None (httpx's default transport) when a proxy is configured."""
    if proxies_configured():
        return None
    return LeanTransport(max_connections=max_connections)


class _HttpxBody(LeanBody, httpx.AsyncByteStream):
    """A lean response body httpx.Response can read (it checks for an AsyncByteStream)."""

    __slots__ = ()


class _Adapted(httpx.AsyncByteStream):
    """A plain lean body as httpx's byte stream."""

    def __init__(self, body: LeanBody) -> None:
        self.body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.body:
            yield chunk

    async def aclose(self) -> None:
        await self.body.aclose()


def as_response(body: LeanBody) -> httpx.Response:
    """A lean answer as httpx.Response (upstream.workers: a stream whose body httpx must decode)."""
    exchange = body.exchange
    stream = body if isinstance(body, httpx.AsyncByteStream) else _Adapted(body)
    return httpx.Response(exchange.status, headers=exchange.headers, stream=stream,
                          extensions={"http_version": b"HTTP/1.1", "reason_phrase": exchange.reason})


class LeanTransport(Lean, httpx.AsyncBaseTransport):
    """The lean client behind httpx's transport seam; see the module docstring."""

    body_type = _HttpxBody

    @classmethod
    def sharing(cls, lean: Lean) -> LeanTransport:
        """httpx's seam over `lean`'s connections: the same pool and certificate check."""
        return cls(max_connections=lean.max_connections, verify=lean.verify, pool=lean.pool)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme == "https":
            port = url.port or 443
        elif scheme == "http":
            port = url.port or 80
        else:
            raise httpx.UnsupportedProtocol(f"Unsupported URL scheme {scheme!r}: only http and https are.")
        key = (scheme, url.raw_host.decode("ascii"), port)
        timeouts: dict[str, float | None] = request.extensions.get("timeout") or {}
        try:
            body: bytes | None = request.content
        except httpx.RequestNotRead:
            body = None if "transfer-encoding" in request.headers else await request.aread()
        stream = await self._answer(key, request_head(request), body, request.stream, timeouts,
                                    head_only=request.method == "HEAD")
        exchange = stream.exchange
        return httpx.Response(exchange.status, headers=exchange.headers, stream=cast(_HttpxBody, stream),
                              extensions={"http_version": b"HTTP/1.1", "reason_phrase": exchange.reason})
