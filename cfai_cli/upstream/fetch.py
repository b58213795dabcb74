"""Fetching images that users reference by URL, so models that only take data URIs can see them.

Imports httpx, stdlib and errors. Only http(s) is fetched, with a size cap and a timeout; addresses on
loopback, private or link-local networks are refused unless `allow_private` is set (no SSRF by default).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
from urllib.parse import urlsplit

import httpx

from cfai_cli.core.caps import ByteBudget
from cfai_cli.errors import InvalidRequest

MAX_IMAGE_BYTES = 20 * 1024 * 1024
_SNIFF = ((b"\x89PNG", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"),
          (b"RIFF", "image/webp"))


def sniff_image_type(data: bytes, declared: str | None = None) -> str:
    for magic, mime in _SNIFF:
        if data.startswith(magic):
            return mime
    if declared and declared.startswith("image/"):
        return declared.split(";")[0].strip()
    return "image/jpeg"


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Globally routable, also for the IPv4 address inside a mapped, 6to4 or NAT64 IPv6 address."""
    if not address.is_global:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        inner = address.ipv4_mapped or address.sixtofour
        if inner is None and address in _NAT64:
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if inner is not None and not inner.is_global:
            return False
    return True


async def _check_host(host: str, param: str) -> None:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        raise InvalidRequest(f"Cannot resolve the image host {host!r}.", param=param,
                             code="invalid_image_url") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not is_public(address):
            raise InvalidRequest(
                f"Refusing to fetch an image from a non-public address ({host}). "
                "Set allow_private_fetch = true in the config to allow it for local development.",
                param=param,
                code="invalid_image_url",
            )


class ImageFetcher:
    def __init__(self, *, allow_private: bool, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._allow_private = allow_private
        self._timeout = timeout
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def data_uri(self, url: str, *, param: str, budget: ByteBudget | None = None) -> str:
        """The image at `url` as a `data:` URI (data URIs are returned unchanged); what is fetched is
        charged to `budget`, the request's allowance for all its images."""
        if url.startswith("data:"):
            return url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRequest("Image URLs must be http(s):// or data: URIs.", param=param, code="invalid_image_url")
        if not self._allow_private:
            await _check_host(parts.hostname, param)
        try:
            # One total deadline: httpx's timeouts are per read, so a host dripping bytes could hold on forever.
            async with asyncio.timeout(self._timeout), self._http.stream("GET", url) as response:
                if response.status_code != 200:
                    raise InvalidRequest(f"Fetching the image failed with HTTP {response.status_code}.",
                                         param=param, code="invalid_image_url")
                data = bytearray()
                async for chunk in response.aiter_bytes():
                    data.extend(chunk)
                    if budget is not None:
                        budget.spend(len(chunk), param=param)
                    if len(data) > MAX_IMAGE_BYTES:
                        raise InvalidRequest("The image is larger than 20 MB.", param=param, code="image_too_large")
                mime = sniff_image_type(bytes(data), response.headers.get("content-type"))
        except httpx.HTTPError as exc:
            raise InvalidRequest(f"Could not fetch the image: {type(exc).__name__}.", param=param,
                                 code="invalid_image_url") from None
        except TimeoutError:
            raise InvalidRequest(f"Fetching the image took longer than {self._timeout:g} s.", param=param,
                                 code="invalid_image_url") from None
        return f"data:{mime};base64,{base64.b64encode(bytes(data)).decode('ascii')}"
