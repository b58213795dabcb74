"""A JSON POST's request line and Host written without httpx (upstream.http11.plain_line) are byte for byte what
httpx writes (httpx_line), and every URL the plain reading is not sure of is left to httpx."""

from __future__ import annotations

import pytest

from cfai_cli.upstream.http11 import Heads, httpx_line, plain_line

ACCOUNT = "0123456789abcdef0123456789abcdef"
PLAIN = [
    f"https://api.cloudflare.com/client/v4/accounts/{ACCOUNT}/ai/run/@cf/meta/llama-3.1-8b-instruct",
    f"https://gateway.ai.cloudflare.com/v1/{ACCOUNT}/my-gw/workers-ai/@hf/thebloke/model-awq",
    f"http://127.0.0.1:8787/client/v4/accounts/{ACCOUNT}/ai/run/@cf/openai/gpt-oss-20b",
    "http://localhost:1/a/b.c/d..e/~x_y/!$&'()*+,;=:@",
    "https://h/run/x.y.z",
    "http://10.0.0.1:65535/",
    "https://ex-ample.com",
    "http://h//double//slash/",
]
LEFT_TO_HTTPX = [
    "https://API.cloudflare.com/x",  # upper case: httpx lowers the host
    "https://api.cloudflare.com:443/x",  # the default port: httpx drops it
    "http://h:80/x",
    "http://h:080/x",
    "https://h/a b",  # httpx escapes the space
    "https://h/a/../b",  # dot segments: httpx removes them
    "https://h/a/./b",
    "https://h/a/.",
    "https://h/x?y=1",
    "https://h/%41",
    "https://xn--bcher-kva.ch/x",
    "https://bücher.ch/x",
    "http://[::1]:8080/x",
    "https://h/a|b",
    "https://user:pw@h/x",
    "https://h/x#frag",
    "http://h:65536/x",  # past the last port: httpx's to judge
]


@pytest.mark.parametrize("url", PLAIN)
def test_a_plain_url_gives_what_httpx_gives(url: str) -> None:
    line = plain_line(url)
    assert line is not None and line == httpx_line(url)


@pytest.mark.parametrize("url", LEFT_TO_HTTPX)
def test_any_other_url_is_left_to_httpx(url: str) -> None:
    assert plain_line(url) is None
    key, line = httpx_line(url)
    assert Heads().head(url, b"A: b\r\n", 2) == (key, line + b"A: b\r\nContent-Length: 2\r\n\r\n")

