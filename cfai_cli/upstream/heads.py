"""A JSON POST's request head as bytes, and an answer's headers as a mapping, for the lean transport's way
(upstream.transport.LeanTransport.open) of the Workers AI client's JSON calls: no httpx.Request or Response.

The head is byte for byte what http11.request_head writes for the httpx.Request the client would otherwise build
(the request line, Host, the client's headers in order, Content-Length); the request line and Host are made
once per URL by httpx itself, the header lines once per header set. Building the two httpx objects and reading
the body through httpx's decoders cost ~275 k instructions of a plain chat request's ~1.46 M through the proxy
(bench/stream_cpu.py --plain under callgrind, issue 25, 2026-12-02). Imports httpx and upstream.http11 only.
"""

from __future__ import annotations

import httpx

from cfai_cli.upstream.http11 import Key, request_head

_MAX_URLS = 512  # model names come from clients: keep the cache bounded


def header_block(headers: httpx.Headers) -> bytes:
    """Header lines as http11.request_head writes them; a line break inside one is refused there too."""
    block = b"".join(b"%s: %s\r\n" % pair for pair in headers.raw)
    if block.count(b"\n") != len(headers.raw) or block.count(b"\r") != len(headers.raw):
        raise httpx.LocalProtocolError("A request header contains a line break.")
    return block


class Heads:
    """The heads of one client's JSON POSTs: (the connection key, the head) for a URL, a header block and a
    body length."""

    __slots__ = ("_lines",)

    def __init__(self) -> None:
        self._lines: dict[str, tuple[Key, bytes]] = {}  # url -> (its connection key, request line and Host)

    def head(self, url: str, block: bytes, length: int) -> tuple[Key, bytes]:
        line = self._lines.get(url)
        if line is None:
            line = self._line(url)
        return line[0], b"%s%sContent-Length: %d\r\n\r\n" % (line[1], block, length)

    def _line(self, url: str) -> tuple[Key, bytes]:
        if len(self._lines) >= _MAX_URLS:
            self._lines.clear()
        probe = httpx.Request("POST", url, content=b"")  # the target and Host as httpx writes them
        parsed = probe.url
        if parsed.scheme not in ("http", "https"):  # as LeanTransport.handle_async_request refuses it
            raise httpx.UnsupportedProtocol(f"Unsupported URL scheme {parsed.scheme!r}: only http and https are.")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        first, host, _ = request_head(probe).split(b"\r\n", 2)
        line = self._lines[url] = ((parsed.scheme, parsed.raw_host.decode("ascii"), port),
                                   first + b"\r\n" + host + b"\r\n")
        return line


def header_map(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """An answer's headers as httpx.Headers.get reads them: names in lower case, a repeated header's values joined
    with ", ", decoded as ASCII, else (every name and value) as UTF-8, else as Latin-1 (httpx's rule)."""
    found: dict[str, str] = {}
    try:
        for name, value in raw:
            lowered = name.decode("ascii").lower()
            text = value.decode("ascii")
            found[lowered] = f"{found[lowered]}, {text}" if lowered in found else text
    except UnicodeDecodeError:
        return dict(httpx.Headers(raw).items())  # rare: httpx's own reading (and its choice of encoding)
    return found
