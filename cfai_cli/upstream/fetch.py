"""Fetching images that users reference by URL, so models that only take data URIs can see them.

Imports httpx (on the first URL fetched), stdlib and errors. Only http(s) is fetched, with a size cap and a
timeout; addresses on loopback, private or link-local networks are refused unless `allow_private` is set (no SSRF
by default), and the fetch connects to the address that was checked (the name is resolved once, by `resolver`).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cfai_cli.core.caps import ByteBudget
from cfai_cli.errors import InvalidRequest

if TYPE_CHECKING:
    import httpx

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


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str], Awaitable[list[str]]]  # a host name -> its addresses, as getaddrinfo gives them

_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known NAT64 (RFC 6052): reaches the IPv4 address inside
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")  # local-use NAT64 (RFC 8215): the operator's own mapping
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # ::a.b.c.d, deprecated (RFC 4291)
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # ::ffff:0:a.b.c.d (SIIT, RFC 2765)


def is_public(address: Address) -> bool:
    """Globally routable unicast, also for the IPv4 address inside a mapped, 6to4 or NAT64 IPv6 address.

    Refused besides the private, loopback, link-local, shared and reserved ranges: multicast, site-local
    fec0::/10, the deprecated IPv4-compatible ::a.b.c.d and translated ::ffff:0:a.b.c.d forms and local-use
    NAT64 64:ff9b:1::/48 (whichever IPv4 address they carry: hosts on the internet never use them).
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id or any(address in net for net in (_LOCAL_NAT64, _IPV4_COMPATIBLE, _IPV4_TRANSLATED)):
            return False
        inner = address.ipv4_mapped or address.sixtofour
        if inner is None and address in _NAT64:
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if inner is not None:
            return is_public(inner)
        if address.is_site_local:
            return False
    return address.is_global and not (address.is_multicast or address.is_reserved or address.is_unspecified)


async def system_resolver(host: str) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def _vetted_address(host: str, param: str, resolver: Resolver) -> str:
    """The one address the image is fetched from: `host` resolved once, every address it has public."""
    try:
        literal: Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    try:
        found = [str(literal)] if literal is not None else await resolver(host)
    except OSError:
        found = []
    try:
        addresses = [ipaddress.ip_address(text.split("%")[0]) for text in found]  # fe80::1%eth0: link-local
    except ValueError:
        addresses = []
    if not addresses:
        raise InvalidRequest(f"Cannot resolve the image host {host!r}.", param=param, code="invalid_image_url")
    if not all(is_public(a) for a in addresses):
        raise InvalidRequest(
            f"Refusing to fetch an image from a non-public address ({host}). "
            "Set allow_private_fetch = true in the config to allow it for local development.",
            param=param,
            code="invalid_image_url",
        )
    return str(addresses[0])


class ImageFetcher:
    def __init__(self, *, allow_private: bool, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None, resolver: Resolver = system_resolver) -> None:
        self._allow_private = allow_private
        self._timeout = timeout
        self._resolver = resolver
        self._transport = transport
        # Made on the first image URL: an httpx client builds an SSL context (certifi's CA bundle), ~60 ms
        # that every one-shot `cfai chat` and `cfai serve`'s start-up paid for images they never fetch.
        self._client: httpx.AsyncClient | None = None

    @property
    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(transport=self._transport, timeout=self._timeout,
                                             follow_redirects=False)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def data_uri(self, url: str, *, param: str, budget: ByteBudget | None = None) -> str:
        """The image at `url` as a `data:` URI (data URIs are returned unchanged); what is fetched is
        charged to `budget`, the request's allowance for all its images."""
        if url.startswith("data:"):
            return url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRequest("Image URLs must be http(s):// or data: URIs.", param=param, code="invalid_image_url")
        import httpx  # not before an image is fetched: a one-shot `cfai chat` never imports it (upstream.httperrors)

        target = httpx.URL(url)
        headers: dict[str, str] = {}
        extensions: dict[str, str] = {}
        if not self._allow_private:
            # Connect to the very address that was checked: resolving the name again to connect would let a
            # DNS answer that changes in between (rebinding) send the request to a private address after all.
            # The name still goes in the Host header and, for https, in SNI and the certificate check.
            address = await _vetted_address(parts.hostname, param, self._resolver)
            headers["Host"] = target.netloc.decode("ascii")
            if target.scheme == "https":
                extensions["sni_hostname"] = target.host
            target = target.copy_with(host=address)
        try:
            # One total deadline: httpx's timeouts are per read, so a host dripping bytes could hold on forever.
            async with asyncio.timeout(self._timeout), self._http.stream(
                    "GET", target, headers=headers, extensions=extensions) as response:
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
