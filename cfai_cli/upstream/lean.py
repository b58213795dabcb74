"""A lean HTTP/1.1 client: a keep-alive pool of asyncio connections (upstream.wire), parsed with httptools;
httpx's seam around it is upstream.transport (LeanTransport).

httpx's default transport (httpcore and anyio) costs more CPU per request than everything else the proxy does
(docs/performance.md). This is the wire work alone: the Workers AI client sends its JSON and streamed calls on it
as bytes (`Lean.open`), without httpx's Request and Response objects, and without importing httpx at all until
something fails or a call needs httpx's own work (multipart bodies, query strings: upstream.transport), so a
one-shot `cfai chat` never imports it (upstream.httperrors says what that saves). What it does:

- one pool per (scheme, host, port) under one `max_connections` limit; callers beyond it wait in FIFO order
  (PoolTimeout after the pool timeout) instead of failing; idle connections are reused last-in first-out and
  closed after `keepalive_expiry` seconds idle (a timer prunes them even when no request comes);
- a connection goes back to the pool only after a complete response with keep-alive and nothing unexpected
  after it; one found closed when taken from the pool is dropped; a request is sent once more, on a new
  connection, only when none of it was written to the old one (found closed just before writing). Once any
  byte is written the request may have reached the server, and a POST must never be sent twice, so a
  failure after that (the server closed a kept-alive connection as we sent) is the caller's to see;
- response heads are capped (MAX_RESPONSE_HEADERS headers, MAX_RESPONSE_HEAD_BYTES bytes, in http11): a server
  sending more gets a RemoteProtocolError and its connection is dropped;
- response bodies stream as they arrive (SSE); any exception or cancellation while a connection is checked
  out closes that connection and frees its place at once (no await in the clean-up), so a cancelled task or
  a client that hangs up never leaks a socket or a pool slot; a body closed after it was started but short
  of its end (a stream's last bytes after `[DONE]` still on their way) is read on for at most TAIL_SECONDS
  and TAIL_BYTES first, so its connection can be reused instead of costing a new TCP and TLS handshake;
- httpx's per-request timeouts (connect, read, write, pool) raise httpx's timeout exceptions; outer
  `asyncio.timeout` scopes cancel it like any coroutine;
- failures are httpx exceptions (ConnectError, ReadError, WriteError, RemoteProtocolError...) whose text is
  the OS's, the TLS library's or the parser's words: never the request, so never its Authorization header;
- https verifies certificates against certifi (or SSL_CERT_FILE / SSL_CERT_DIR, as httpx does) with SNI,
  HTTP/1.1 only. Proxies are not supported: `lean_for()` (and upstream.transport's `lean_transport()`) return
  None when one is configured, so the client falls back to httpx's default transport, which honours them.

The request head and the parser are upstream.http11, a connection's reads and writes upstream.wire, and which
connection a request gets is upstream.pool; this module opens connections (TCP, TLS) and carries a request and
its response over one; what the environment says of proxies and trusted certificates is upstream.netenv. Imports
those, upstream.httperrors, upstream.whole and the standard library only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from typing import Any

from cfai_cli.upstream import whole
from cfai_cli.upstream.http11 import Exchange, Key, header_map
from cfai_cli.upstream.httperrors import caught, http_error
from cfai_cli.upstream.netenv import default_ssl_context, proxies_configured
from cfai_cli.upstream.pool import KEEPALIVE_EXPIRY, Pool
from cfai_cli.upstream.wire import Conn, Wire, drain, fill, os_error, read

__all__ = ["PREFILL", "TAIL_BYTES", "TAIL_SECONDS", "Lean", "LeanBody", "lean_for"]

_WRITE_HIGH_WATER = 64 * 1024  # buffered request bytes beyond which we wait for the socket (write timeout)
_JOIN_BELOW = 64 * 1024  # request bodies smaller than this are sent with their head in one buffer
TAIL_SECONDS = 0.05  # a started body closed short of its end: how long to read on so its connection is reused
TAIL_BYTES = 64 * 1024  # ... and how much: more than that is a stream cut short, not its tail
PREFILL = 256 * 1024  # LeanBody.read_buffer: a declared body at least this long is read into one buffer


def lean_for(given: object, *, fast_http: bool, max_connections: int) -> Lean | None:
    """What an upstream client sends its calls on as bytes (`Lean.open`): the transport given when it is a lean
    one (tests), else a new one unless a transport was given (tests, --offline), `fast_http` is off, a proxy is
    configured (httpx honours proxies, the lean one does not) or `--debug` logs every request (upstream.network's
    LoggingTransport); None: everything goes through the httpx transport upstream.network chooses."""
    if logging.getLogger("cfai.http").isEnabledFor(logging.DEBUG):
        return None
    if given is not None:
        return given if isinstance(given, Lean) else None
    if not fast_http or proxies_configured():
        return None
    return Lean(max_connections=max_connections)


def _declared(headers: dict[str, str]) -> int | None:
    """A body's declared length when it is PREFILL bytes or more and not chunked; None otherwise."""
    declared = headers.get("content-length", "").strip()
    if not declared.isdigit() or "transfer-encoding" in headers:
        return None
    length = int(declared)
    return length if length >= PREFILL else None


class _Retry(Exception):
    """Internal: the connection failed before any of the request was written; send it on a new one."""


class LeanBody:
    """A response body as it arrives. Read to its end, its connection goes back to the pool; closed early or
    broken (an error, a cancellation), the connection is closed."""

    __slots__ = ("_conn", "_exchange", "_pool", "_started", "_timeout", "exchange")

    def __init__(self, pool: Pool, conn: Conn, exchange: Exchange, timeout: float | None) -> None:
        self._pool = pool
        self._conn: Conn | None = conn
        self._exchange = self.exchange = exchange  # its status and headers, for a caller without httpx.Response
        self._timeout = timeout
        self._started = False
        if exchange.complete:
            self._finish()
        else:
            pool.lend(conn)

    def __aiter__(self) -> LeanBody:
        self._started = True
        return self

    async def __anext__(self) -> bytes:
        exchange = self._exchange
        while True:
            if exchange.chunks:
                return exchange.take()
            conn = self._conn
            if conn is None:
                raise StopAsyncIteration
            try:
                data = await read(conn, self._timeout)
                if data:
                    exchange.feed(data)
                else:
                    exchange.at_eof()
            except BaseException:
                self._conn = None
                self._pool.discard(conn)
                raise
            if exchange.complete:
                self._finish()

    def ready(self) -> bytes | None:
        """What `__anext__` would return at once, without waiting: the body's bytes already received (none: None).
        A reader that waits under a deadline need not arm it for these (upstream.workers_answers.StreamChunks)."""
        exchange = self._exchange
        return exchange.take() if exchange.chunks else None

    async def read(self) -> bytes:
        """The whole body (what `httpx.Response.aread` gives, without its decoder and byte-stream layers)."""
        self._started = True
        exchange = self._exchange
        limit = whole.MAX_ANSWER_BYTES
        if self._conn is None:  # the usual JSON answer: it came whole with its head
            data = exchange.take()
            if len(data) > limit:
                raise whole.too_large(limit)
            return data
        headers = header_map(exchange.headers)
        whole.check_declared(headers)
        length = _declared(headers)
        if length is not None:  # one copy of it (the bytes), not one a read and their join
            return bytes(await self._filled(length))
        return await self._joined(limit)

    async def read_buffer(self) -> bytes | bytearray:
        """`read`, but a body of a declared length (within the cap: `whole.check_declared`) of PREFILL bytes or more
        is the buffer it was received into, made at that length: not copied, and not held twice while its pieces
        are joined (an image, ~1.3 MB: four read at once; issue 25, rounds 8 and 10)."""
        exchange = self._exchange
        if self._conn is None:
            return await self.read()
        headers = header_map(exchange.headers)
        length = _declared(headers)
        if length is None:
            return await self.read()  # which checks the declared length itself
        whole.check_declared(headers)
        return await self._filled(length)

    async def _filled(self, length: int) -> bytearray:
        """The body, of a declared `length`, in one buffer made at that length. What the parser has of it is copied
        in; the rest is received into it in place (upstream.wire.fill) and not parsed: its declared length is its
        end, as the parser would find it (EOF before it is the same RemoteProtocolError, and nothing past it is
        received), and the parser's verdicts on the head and on keep-alive stand."""
        conn = self._conn
        assert conn is not None
        exchange = self._exchange
        self._started = True
        buffer = bytearray(length)
        try:
            data = conn.wire.take()
            if data:  # received before: parsed first, in order
                exchange.feed(data)
            head = exchange.take() if exchange.chunks else b""
            got = len(head)
            if got > length:  # cannot happen (the parser stops at the declared length): refused
                raise http_error("RemoteProtocolError", "The response body is longer than its Content-Length.")
            buffer[:got] = head
            if not exchange.complete:
                await fill(conn, buffer, got, self._timeout)
                exchange.complete = True
            elif got != length:  # cannot happen either (EOF short of it raises): refused
                raise http_error("RemoteProtocolError", "The response body is shorter than its Content-Length.")
        except BaseException:
            self._drop()
            raise
        self._finish()
        return buffer

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.discard(conn)

    async def _joined(self, limit: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        async for chunk in self:
            size += len(chunk)
            if size > limit:  # upstream.whole: dropped at once, not read on as a tail
                self._drop()
                raise whole.too_large(limit)
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _finish(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            exchange = self._exchange
            exchange.parser = None  # it refers back to the exchange: no cycle left for the garbage collector
            self._pool.release(conn, exchange.keep_alive and not exchange.extra)

    async def aclose(self) -> None:
        if self._conn is not None and self._started:
            await self._read_tail()
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.discard(conn)

    async def _read_tail(self) -> None:
        """Read on briefly: a body that completes goes back to the pool (__anext__ releases it); one that
        fails or times out is discarded by __anext__ itself."""
        read = 0
        try:
            async with asyncio.timeout(TAIL_SECONDS):
                while self._conn is not None and read <= TAIL_BYTES:
                    read += len(await self.__anext__())
        except caught("HTTPError", also=(StopAsyncIteration, TimeoutError, OSError)):
            pass

    def __del__(self) -> None:  # a response dropped without aclose(): do not keep its connection checked out
        conn = getattr(self, "_conn", None)
        if conn is not None:
            self._conn = None
            with contextlib.suppress(Exception):
                self._pool.discard(conn)


class Lean:
    """HTTP/1.1 over asyncio streams with a keep-alive pool; see the module docstring."""

    body_type: type[LeanBody] = LeanBody  # what a response body is made as (upstream.transport: one httpx can read)

    def __init__(self, *, max_connections: int = 100, keepalive_expiry: float = KEEPALIVE_EXPIRY,
                 verify: ssl.SSLContext | bool = True, pool: Pool | None = None) -> None:
        self.pool = Pool(max_connections=max_connections, keepalive_expiry=keepalive_expiry) if pool is None else pool
        self._verify = verify
        self._ssl: ssl.SSLContext | None = verify if isinstance(verify, ssl.SSLContext) else None

    # ---- introspection (tests, metrics) -------------------------------------------------------------

    @property
    def verify(self) -> ssl.SSLContext | bool:
        return self._verify

    @property
    def max_connections(self) -> int:
        return self.pool.max_connections

    @property
    def connections(self) -> int:
        """Connections open or opening, idle ones included."""
        return self.pool.connections

    @property
    def idle_connections(self) -> int:
        return self.pool.idle_connections

    # ---- a request in bytes ------------------------------------------------------------------------

    async def open(self, key: Key, head: bytes, body: bytes, timeout: float | None) -> LeanBody:
        """A request already in bytes (its head and body), sent as `handle_async_request` sends one, with one
        `timeout` for each of httpx's four: its answer's status and headers (`.exchange`), and its body to
        read (`.read()`) or close. Without httpx's Request and Response objects: building them, their Headers,
        and reading the body through httpx's decoders was ~55 µs of a chat request's ~700 (upstream.workers'
        JSON calls, issue 25, 2026-12-02)."""
        timeouts = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        return await self._answer(key, head, body, None, timeouts, head_only=False)

    async def _answer(self, key: Key, head: bytes, body: bytes | None, stream: Any,
                      timeouts: dict[str, float | None], *, head_only: bool) -> LeanBody:
        retried = False
        while True:
            conn = await self.pool.acquire(key, timeouts.get("pool"), fresh=retried)
            if conn is None:  # a place is ours: open a connection in it
                try:
                    conn = await self._connect(key, timeouts.get("connect"))
                except BaseException:
                    self.pool.free_slot()
                    raise
            try:
                return await self._exchange(conn, head, body, stream, timeouts, head_only=head_only,
                                            may_retry=not retried)
            except _Retry:
                retried = True  # once at most

    async def aclose(self) -> None:
        self.pool.close()

    # ---- one request on one connection --------------------------------------------------------------

    async def _exchange(self, conn: Conn, head: bytes, body: bytes | None, stream: Any,
                        timeouts: dict[str, float | None], *, head_only: bool, may_retry: bool) -> LeanBody:
        exchange = Exchange(head_only)
        read_timeout = timeouts.get("read")
        written = False
        try:
            writer = conn.transport
            if not conn.alive():  # closed since it was handed over (writing would raise on uvloop)
                raise http_error("WriteError", "The connection closed before the request was sent.")
            written = True  # from here on, some of the request may reach the server
            if body is not None:
                if len(body) < _JOIN_BELOW:
                    writer.write(head + body)
                else:
                    writer.writelines((head, body))
                if conn.transport.get_write_buffer_size() > _WRITE_HIGH_WATER:
                    await drain(conn, timeouts.get("write"))
            else:
                writer.write(head)
                await self._send_chunked(conn, stream, timeouts.get("write"))
            while not exchange.headers_done:
                data = await read(conn, read_timeout)
                if data:
                    exchange.feed(data)
                else:
                    exchange.at_eof()
        except caught("TransportError") as exc:
            self.pool.discard(conn)
            if may_retry and not written:
                raise _Retry from exc
            raise
        except BaseException:
            self.pool.discard(conn)
            raise
        return self.body_type(self.pool, conn, exchange, read_timeout)

    async def _send_chunked(self, conn: Conn, stream: Any, timeout: float | None) -> None:
        writer = conn.transport
        async for part in stream:
            if part:
                if conn.transport.is_closing():
                    raise http_error("WriteError", "The connection closed while the request was being sent.")
                writer.writelines((b"%x\r\n" % len(part), part, b"\r\n"))
                if conn.transport.get_write_buffer_size() > _WRITE_HIGH_WATER:
                    await drain(conn, timeout)
        if conn.transport.is_closing():
            raise http_error("WriteError", "The connection closed while the request was being sent.")
        writer.write(b"0\r\n\r\n")
        if conn.transport.get_write_buffer_size() > _WRITE_HIGH_WATER:
            await drain(conn, timeout)

    # ---- connections ---------------------------------------------------------------------------------

    async def _connect(self, key: Key, timeout: float | None) -> Conn:
        scheme, host, port = key
        context = self._ssl_context() if scheme == "https" else None
        loop = asyncio.get_running_loop()
        try:
            if timeout is None:
                transport, wire = await loop.create_connection(Wire, host, port, ssl=context,
                                                               server_hostname=host if context else None)
            else:
                async with asyncio.timeout(timeout):
                    transport, wire = await loop.create_connection(Wire, host, port, ssl=context,
                                                                   server_hostname=host if context else None)
        except TimeoutError:
            raise http_error("ConnectTimeout", f"Timed out connecting to {host}:{port}.") from None
        except OSError as exc:  # refused, unreachable, DNS (gaierror), TLS (SSLError, certificate)
            raise http_error("ConnectError", os_error(exc, f"Could not connect to {host}:{port}")) from None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return Conn(key, transport, wire)

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            if self._verify is False:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                context.set_alpn_protocols(["http/1.1"])
                self._ssl = context
            else:
                self._ssl = default_ssl_context()
        return self._ssl
