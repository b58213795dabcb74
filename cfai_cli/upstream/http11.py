"""HTTP/1.1 on one connection: the request head and the response parser (httptools callbacks); and a JSON POST's
head as bytes, with its answer's headers read as httpx reads them, for calls made without httpx's objects (Heads,
header_map). The pool that lends connections out is upstream.pool; a connection's bytes and the waits on them,
upstream.wire; the transport over all three, upstream.lean (httpx's seam around it: upstream.transport).

Error texts are the parser's words, never the request's (so never its Authorization header). Imports httptools,
upstream.httperrors and the standard library only: httpx only for what it alone does (a URL that is not plain, an
answer's headers outside ASCII) and to raise its exceptions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httptools

from cfai_cli.upstream.httperrors import http_error

if TYPE_CHECKING:
    import httpx

Key = tuple[str, str, int]  # (scheme, host, port)
# A response head beyond these is refused (http.client and h11 draw the line in the same place): a server
# or something in between must not make the proxy buffer headers without end.
MAX_RESPONSE_HEADERS = 100
MAX_RESPONSE_HEAD_BYTES = 64 * 1024


class _HeadTooLarge(Exception):
    """Internal: raised in a parser callback to stop parsing a response head past the caps."""


class Exchange:
    """One response being parsed: the httptools callbacks fill it in."""

    __slots__ = (
        "chunks",
        "complete",
        "extra",
        "framed",
        "head_bytes",
        "head_only",
        "header_bytes",
        "header_count",
        "headers",
        "headers_done",
        "informational",
        "keep_alive",
        "parser",
        "reason",
        "status",
    )

    def __init__(self, head_only: bool) -> None:
        self.parser: Any = httptools.HttpResponseParser(self)  # None once the response is complete
        self.head_only = head_only
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.framed = False  # Content-Length or chunked: the body's end is known, EOF before it is an error
        self.extra = False  # bytes after the end of the response: the connection cannot be reused
        self.informational = False
        self.head_bytes = 0  # raw bytes received before the final head was complete
        self.header_bytes = 0  # the headers' own size, informational responses' included
        self.header_count = 0

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self.complete:
            self.extra = True

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        self.header_bytes += len(name) + len(value) + 4
        if self.header_count > MAX_RESPONSE_HEADERS or self.header_bytes > MAX_RESPONSE_HEAD_BYTES:
            raise _HeadTooLarge  # stops the parser; feed() says what happened
        self.headers.append((name, value))
        size = len(name)
        if size == 14 and name.lower() == b"content-length":
            self.framed = True
        elif size == 17 and name.lower() == b"transfer-encoding":
            self.framed = value.rstrip().lower().endswith(b"chunked")

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # 100 Continue, 103 Early Hints: the answer follows
            self.informational = True
            self.reason = b""
            self.headers = []
            self.framed = False
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        self.headers_done = True
        if self.head_only:
            self.complete = True

    def on_body(self, body: bytes) -> None:
        if self.complete:
            self.extra = True
        else:
            self.chunks.append(body)

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
        elif not self.complete:
            self.complete = True

    def feed(self, data: bytes) -> None:
        """Parse `data`; a malformed response, or a head beyond the caps, raises RemoteProtocolError (garbage
        after a complete one only makes the connection unusable)."""
        if not self.headers_done:
            # httptools buffers a header line until it ends: count raw bytes too, so one endless line is caught.
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if not self.complete or self.status == 101:
                raise http_error("RemoteProtocolError",
                                 "The server switched protocols (HTTP 101), which is not supported.") from None
            self.extra = True
        except httptools.HttpParserError as exc:  # HttpParserCallbackError too: a callback raised
            if self.complete:
                self.extra = True
            elif isinstance(exc.__context__, _HeadTooLarge):
                raise self._too_large() from None
            else:
                raise http_error("RemoteProtocolError", f"Malformed HTTP response from the server: {exc}.") from None
        if not self.headers_done and self.head_bytes > MAX_RESPONSE_HEAD_BYTES:
            raise self._too_large()

    def _too_large(self) -> httpx.HTTPError:
        return http_error(
            "RemoteProtocolError",
            f"The server's response head is too large (the limits are {MAX_RESPONSE_HEADERS} headers and "
            f"{MAX_RESPONSE_HEAD_BYTES // 1024} KiB); the connection was dropped.")

    def at_eof(self) -> None:
        """The server closed the connection: the end of a read-until-close body, or an error."""
        if not self.headers_done:
            raise http_error("RemoteProtocolError", "Server disconnected without sending a response.")
        if not self.complete:
            if self.framed:
                raise http_error("RemoteProtocolError",
                                 "The server closed the connection before the end of the response body.")
            self.complete = True
            self.keep_alive = False

    def take(self) -> bytes:
        chunks = self.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        return data


def request_head(request: httpx.Request) -> bytes:
    parts = [request.method.encode("ascii"), b" ", request.url.raw_path, b" HTTP/1.1\r\n"]
    raw = request.headers.raw
    for name, value in raw:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    head = b"".join(parts)
    lines = len(raw) + 2
    if head.count(b"\n") != lines or head.count(b"\r") != lines:  # a CR or LF inside a header: refuse, unshown
        raise http_error("LocalProtocolError", "A request header contains a line break.")
    return head


# ---- a JSON POST as bytes (upstream.workers on the lean transport: LeanTransport.open) -----------------------
#
# The head is byte for byte what request_head writes for the httpx.Request the Workers AI client would otherwise
# build (the request line, Host, its headers in order, Content-Length); the request line and Host are made once
# per URL by httpx itself, the header lines once per header set, and an answer's headers are read as
# httpx.Headers.get reads them. Building the two httpx objects and reading the body through httpx's decoders
# cost ~275 k instructions of a plain chat request's ~1.46 M through the proxy (bench/stream_cpu.py --plain under
# callgrind, issue 25, 2026-12-02).

_MAX_URLS = 512  # model names come from clients: keep the cache bounded


def header_block(raw: Sequence[tuple[bytes, bytes]]) -> bytes:
    """Header lines (`httpx.Headers.raw`, or `header_pairs`) as request_head writes them; a line break inside one
    is refused there too."""
    block = b"".join(b"%s: %s\r\n" % pair for pair in raw)
    if block.count(b"\n") != len(raw) or block.count(b"\r") != len(raw):
        raise http_error("LocalProtocolError", "A request header contains a line break.")
    return block


def header_pairs(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    """`httpx.Headers(headers).raw`: names and values encoded as ASCII, in order (a character outside ASCII raises
    the same UnicodeEncodeError as httpx's)."""
    return [(name.encode("ascii"), value.encode("ascii")) for name, value in headers.items()]


# A URL whose request line and Host httpx writes unchanged: http(s), a lower-case host name or IPv4 address (no
# IDNA), a port other than the scheme's default, a path of characters httpx leaves as they are and without dot
# segments, no query. Anything else is parsed by httpx itself (tests/upstream/test_http11_heads.py compares both).
# Sets, not a regular expression: compiling one was ~1 M instructions of every one-shot command.
_HOST = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")
_PATH = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/")


def plain_line(url: str) -> tuple[Key, bytes] | None:
    """(the connection key, the request line and Host) of a POST to `url`, as httpx writes them, for a plain URL
    (see above); None for any other, which httpx parses."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https"):
        return None
    netloc, _, path = rest.partition("/")
    host, colon, port_text = netloc.partition(":")
    if not host or not _HOST.issuperset(host) or "xn--" in host or ".." in host or host[0] == "." \
            or host[-1] == ".":
        return None
    default = 443 if scheme == "https" else 80
    port = default
    if colon:
        if not (port_text.isascii() and port_text.isdigit()) or port_text[0] == "0" or len(port_text) > 5:
            return None
        port = int(port_text)
        if port == default or port > 65535:  # httpx drops the one, and is left to judge the other
            return None
    if not _PATH.issuperset(path) or any(part in (".", "..") for part in path.split("/")):
        return None
    return (scheme, host, port), f"POST /{path} HTTP/1.1\r\nHost: {netloc}\r\n".encode("ascii")


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
        line = plain_line(url)
        if line is None:
            line = httpx_line(url)
        self._lines[url] = line
        return line


def httpx_line(url: str) -> tuple[Key, bytes]:
    """(the connection key, the request line and Host) of a POST to `url`, written by httpx itself."""
    import httpx

    probe = httpx.Request("POST", url, content=b"")  # the target and Host as httpx writes them
    parsed = probe.url
    if parsed.scheme not in ("http", "https"):  # as LeanTransport.handle_async_request refuses it
        raise http_error("UnsupportedProtocol", f"Unsupported URL scheme {parsed.scheme!r}: only http and https are.")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    first, host, _ = request_head(probe).split(b"\r\n", 2)
    return (parsed.scheme, parsed.raw_host.decode("ascii"), port), first + b"\r\n" + host + b"\r\n"


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
        import httpx

        return dict(httpx.Headers(raw).items())  # rare: httpx's own reading (and its choice of encoding)
    return found
