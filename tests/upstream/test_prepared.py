"""PreparedPosts builds the very request `httpx.Request(content=...)` builds (the upstream clients' fast path)."""

from __future__ import annotations

import httpx
import pytest

from cfai_cli.upstream.prepared import PreparedPosts

URL = httpx.URL("https://api.cloudflare.com/client/v4/accounts/a/ai/run/@cf/meta/llama-3.1-8b-instruct")
HEADERS = httpx.Headers({"Authorization": "Bearer t", "User-Agent": "cfai/1", "Accept": "*/*",
                         "Content-Type": "application/json"})
EXTENSIONS = {"timeout": {"connect": 5.0, "read": 9.0, "write": 9.0, "pool": 9.0}}


def same(ours: httpx.Request, theirs: httpx.Request) -> None:
    assert ours.method == theirs.method
    assert ours.url == theirs.url
    assert ours.headers.raw == theirs.headers.raw  # order and casing too: Host first, Content-Length last
    assert ours.content == theirs.content
    assert type(ours.stream) is type(theirs.stream)
    assert ours.extensions == theirs.extensions


@pytest.mark.parametrize("url", [URL, httpx.URL("http://127.0.0.1:8700/client/v4/x"), httpx.URL("http://h:81/p?q=1")])
@pytest.mark.parametrize("content", [b"", b'{"a":1}', "é".encode() * 5000])
def test_the_same_request_as_httpx(url: httpx.URL, content: bytes) -> None:
    posts = PreparedPosts()
    for _ in range(2):  # built, then from the prepared headers
        same(posts.post(url, HEADERS, content, EXTENSIONS),
             httpx.Request("POST", url, headers=HEADERS, content=content, extensions=EXTENSIONS))


def test_requests_do_not_share_headers() -> None:
    posts = PreparedPosts()
    first = posts.post(URL, HEADERS, b"12345", EXTENSIONS)
    second = posts.post(URL, HEADERS, b"1", EXTENSIONS)
    assert first.headers["content-length"] == "5" and second.headers["content-length"] == "1"
    assert "content-length" not in HEADERS and "host" not in HEADERS


def test_other_headers_and_hosts_get_their_own() -> None:
    posts = PreparedPosts()
    other = HEADERS.copy()
    other["x-session-affinity"] = "conv-1"
    for url, headers in ((URL, HEADERS), (URL, other), (httpx.URL("https://b.example/v"), HEADERS)):
        same(posts.post(url, headers, b"{}", EXTENSIONS),
             httpx.Request("POST", url, headers=headers, content=b"{}", extensions=EXTENSIONS))


@pytest.mark.parametrize("extra", [{"Host": "elsewhere"}, {"Content-Length": "2"}])
def test_headers_that_set_host_or_length_keep_httpx_rules(extra: dict[str, str]) -> None:
    headers = httpx.Headers({**HEADERS, **extra})
    same(PreparedPosts().post(URL, headers, b"{}", EXTENSIONS),
         httpx.Request("POST", URL, headers=headers, content=b"{}", extensions=EXTENSIONS))
