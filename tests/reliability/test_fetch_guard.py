"""No local reads or internal fetches from user input: image URLs are http(s) or data: only, public hosts only
(unless allow_private_fetch), with a size cap and one total timeout, and redirects are never followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from cfai_cli.emulator.images import png
from cfai_cli.errors import InvalidRequest
from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings
from cfai_cli.upstream.fetch import MAX_IMAGE_BYTES, ImageFetcher, is_public
from tests.fake_workers import FakeWorkers, native_text
from tests.openai_schema import validate

pytestmark = pytest.mark.anyio
PNG = png(4, 4, b"key")


class Host:
    """The image server; records every request it gets (a refused URL must never reach it)."""

    def __init__(self, answer: Any = None) -> None:
        self.requests: list[httpx.Request] = []
        self.answer = answer or (lambda request: httpx.Response(200, headers={"content-type": "image/png"},
                                                                content=PNG))

    def __call__(self, request: httpx.Request) -> Any:
        self.requests.append(request)
        return self.answer(request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


NOT_HTTP = ["file:///etc/passwd", "file://localhost/etc/passwd", "FILE:///etc/passwd", "ftp://example.com/a.png",
            "gopher://example.com/", "javascript:alert(1)", "/etc/passwd", "../../cfai.db", "//example.com/a.png",
            "http:///a.png", "", "jar:file:///x!/a.png", "dict://127.0.0.1:6379/info", "\\\\server\\share\\a.png"]
PRIVATE = ["http://127.0.0.1/a.png", "http://localhost/a.png", "http://10.0.0.7/a.png", "http://192.168.1.1/a.png",
           "http://172.16.0.1/a.png", "http://169.254.169.254/latest/meta-data/", "http://[::1]/a.png",
           "http://[::ffff:127.0.0.1]/a.png", "http://0.0.0.0/a.png", "http://2130706433/a.png",
           "http://0x7f.1/a.png", "http://100.64.0.1/a.png", "http://[fd00::1]/a.png", "http://[fe80::1]/a.png",
           "http://[64:ff9b::7f00:1]/a.png", "http://[2002:7f00:1::1]/a.png",
           "https://user:pass@127.0.0.1:8443/a.png", "http://example.com@127.0.0.1/a.png"]


@pytest.mark.parametrize("url", NOT_HTTP)
async def test_only_http_and_data_urls_are_fetched(url: str) -> None:
    host = Host()
    fetcher = ImageFetcher(allow_private=True, transport=host.transport())
    with pytest.raises(InvalidRequest) as caught:
        await fetcher.data_uri(url, param="p")
    assert caught.value.code == "invalid_image_url" and caught.value.param == "p"
    assert host.requests == []
    await fetcher.aclose()


@pytest.mark.parametrize("url", PRIVATE)
async def test_private_and_loopback_hosts_are_refused_by_default(url: str) -> None:
    host = Host()
    fetcher = ImageFetcher(allow_private=False, transport=host.transport())
    with pytest.raises(InvalidRequest, match=r"non-public address|Cannot resolve"):
        await fetcher.data_uri(url, param="p")
    assert host.requests == []
    await fetcher.aclose()


async def test_the_setting_allows_private_hosts_for_local_development() -> None:
    host = Host()
    fetcher = ImageFetcher(allow_private=True, transport=host.transport())
    uri = await fetcher.data_uri("http://127.0.0.1:8000/a.png", param="p")
    assert uri.startswith("data:image/png;base64,") and len(host.requests) == 1
    await fetcher.aclose()


def test_embedded_ipv4_addresses_count() -> None:
    for public in ("8.8.8.8", "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::1", "::ffff:8.8.8.8"):
        assert is_public(ipaddress.ip_address(public)), public
    for private in ("64:ff9b::a00:1", "2002:a00:1::1", "::ffff:192.168.0.1", "::1", "127.0.0.2",
                    # IPv4-compatible ::a.b.c.d and translated ::ffff:0:a.b.c.d: refused whatever they carry
                    "::127.0.0.1", "::10.0.0.1", "::8.8.8.8", "::ffff:0:127.0.0.1", "::ffff:0:8.8.8.8",
                    # local-use NAT64 (RFC 8215), site-local, multicast
                    "64:ff9b:1::7f00:1", "64:ff9b:1::808:808", "fec0::1", "feff::1", "ff02::1", "ff0e::1",
                    "224.0.0.1", "239.255.255.250", "0.0.0.0", "::", "255.255.255.255", "fe80::1"):
        assert not is_public(ipaddress.ip_address(private)), private


class Rebinding:
    """A DNS server for an attacker's name: a public address the first time, loopback every time after."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    async def __call__(self, host: str) -> list[str]:
        self.asked.append(host)
        return self.answers[min(len(self.asked), len(self.answers)) - 1]


@pytest.mark.parametrize("url", ["http://rebind.example/a.png", "https://rebind.example:8443/a.png?x=1"])
async def test_the_fetch_connects_to_the_address_that_was_checked(url: str) -> None:
    """Checked once, connected to the same address: a second lookup (the rebinding) never happens."""
    resolver = Rebinding(["93.184.215.14"], ["127.0.0.1"])
    host = Host()
    fetcher = ImageFetcher(allow_private=False, transport=host.transport(), resolver=resolver)
    assert (await fetcher.data_uri(url, param="p")).startswith("data:image/png;base64,")
    assert resolver.asked == ["rebind.example"]
    (request,) = host.requests
    assert request.url.host == "93.184.215.14" and request.url.path == "/a.png"
    assert request.headers["host"] == ("rebind.example:8443" if "8443" in url else "rebind.example")
    if url.startswith("https"):
        assert request.extensions["sni_hostname"] == "rebind.example"  # TLS still checks the name's certificate
    # And the second time round, the rebinding answer is what gets checked: refused, nothing fetched.
    with pytest.raises(InvalidRequest, match="non-public address"):
        await fetcher.data_uri(url, param="p")
    assert len(host.requests) == 1
    await fetcher.aclose()


@pytest.mark.parametrize("answer", [["93.184.215.14", "127.0.0.1"], ["::ffff:0:7f00:1"], ["64:ff9b:1::a00:1"],
                                    ["ff0e::1"], ["fec0::5"], ["not an address"], []])
async def test_a_name_with_any_non_public_address_is_refused(answer: list[str]) -> None:
    host = Host()
    fetcher = ImageFetcher(allow_private=False, transport=host.transport(), resolver=Rebinding(answer))
    with pytest.raises(InvalidRequest, match=r"non-public address|Cannot resolve") as caught:
        await fetcher.data_uri("http://mixed.example/a.png", param="p")
    assert caught.value.code == "invalid_image_url" and host.requests == []
    await fetcher.aclose()


async def test_an_ipv6_literal_is_connected_to_as_given() -> None:
    host = Host()
    resolver = Rebinding(["127.0.0.1"])
    fetcher = ImageFetcher(allow_private=False, transport=host.transport(), resolver=resolver)
    await fetcher.data_uri("http://[2606:4700::1111]/a.png", param="p")
    assert resolver.asked == [] and host.requests[0].url.host == "2606:4700::1111"
    await fetcher.aclose()


async def test_size_cap_redirects_and_a_dripping_host() -> None:
    big = Host(lambda request: httpx.Response(200, content=b"\x89PNG" + b"\0" * MAX_IMAGE_BYTES))
    fetcher = ImageFetcher(allow_private=True, transport=big.transport())
    with pytest.raises(InvalidRequest) as caught:
        await fetcher.data_uri("http://127.0.0.1/big.png", param="p")
    assert caught.value.code == "image_too_large"
    await fetcher.aclose()

    redirect = Host(lambda request: httpx.Response(302, headers={"location": "file:///etc/passwd"}))
    fetcher = ImageFetcher(allow_private=True, transport=redirect.transport())
    with pytest.raises(InvalidRequest, match="HTTP 302"):
        await fetcher.data_uri("http://127.0.0.1/a.png", param="p")
    assert len(redirect.requests) == 1  # not followed
    await fetcher.aclose()

    async def drip() -> AsyncIterator[bytes]:
        while True:
            yield b"\0"
            await asyncio.sleep(0.05)  # each read is quick: only a total deadline stops this

    slow = Host(lambda request: httpx.Response(200, content=drip()))
    fetcher = ImageFetcher(allow_private=True, timeout=0.5, transport=slow.transport())
    started = time.perf_counter()
    with pytest.raises(InvalidRequest, match="longer than"):
        await fetcher.data_uri("http://127.0.0.1/a.png", param="p")
    assert time.perf_counter() - started < 1.5
    await fetcher.aclose()


LLAMA = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"


@pytest.mark.parametrize("url", ["file:///etc/passwd", "http://127.0.0.1:3000/v1/models",
                                 "http://169.254.169.254/latest/meta-data/"])
async def test_through_the_proxy_a_400_names_the_field_and_nothing_is_fetched(
        settings: Settings, api_key: str, fake: FakeWorkers, url: str) -> None:
    host = Host()
    fake.models[LLAMA] = native_text("should not be asked")
    app = create_app(settings, transport=fake.transport(), image_transport=host.transport())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test",
            headers={"Authorization": f"Bearer {api_key}"}) as client:
        parts = [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": url}}]
        chat = await client.post("/v1/chat/completions", json={"model": LLAMA, "messages": [
            {"role": "user", "content": parts}]})
        responses = await client.post("/v1/responses", json={"model": LLAMA, "input": [{"role": "user", "content": [
            {"type": "input_image", "image_url": url}]}]})
    for response in (chat, responses):
        assert response.status_code == 400, response.text
        validate(response.json(), "ErrorResponse")
        assert response.json()["error"]["code"] == "invalid_image_url"
    assert responses.json()["error"]["param"].startswith("input")
    assert chat.json()["error"]["param"] == "messages[0].content[1].image_url.url"
    assert host.requests == [] and fake.calls == []
