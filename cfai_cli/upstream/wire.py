"""One upstream connection's bytes: an asyncio BufferedProtocol the event loop reads into, and the waits on it
(a read, the socket taking what was written) with httpx's timeout and error types.

It replaces asyncio's StreamReader and StreamWriter under upstream.lean: a StreamReader copies what it receives
three times before the caller has it (`extend` into its buffer, `read()`'s slice and `bytes()` of it) after the
event loop's own copy into a new bytes object, and each read is a turn through its buffer's bookkeeping. Here the
event loop receives into a scratch buffer (`get_buffer`, public asyncio API, uvloop's too; one a thread) and each
read is one `bytes` copy of what arrived. A body of a declared length can instead be received in place
(`fill`): the event loop writes straight into the caller's buffer made at that length, no copy at all, and the
read ends at that length (nothing past it is received then). For 2,048 float embeddings (21 answers, 32.7 MB) the
reads' copies went from six to one (bench/payload_cpu.py under callgrind, with the check of core.workers.vector_cut:
~1,422 → ~1,178 M instructions a request; issue 25, round 10, docs/performance.md).

Flow control is StreamReader's: reading pauses while more than READ_HIGH_WATER unread bytes wait (a slow stream
reader holds no more than that), and the socket taking written bytes is awaited as StreamWriter.drain does.
Imports upstream.http11 (Key), upstream.httperrors and the standard library only.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import threading
from typing import Any, cast

from cfai_cli.upstream.http11 import Key
from cfai_cli.upstream.httperrors import http_error

READ_SIZE = 256 * 1024  # the scratch buffer the event loop reads into (one a thread: _scratch_buffer)
READ_HIGH_WATER = 2 * READ_SIZE  # unread bytes beyond which reading pauses (StreamReader's 2 × its limit)

_poll = getattr(select, "poll", None)  # not on Windows: select.select there


_scratch = threading.local()


def _scratch_buffer() -> memoryview:
    """The scratch buffer of this thread's connections. One is enough: the event loop (asyncio's, uvloop's, and
    their TLS layers) asks a protocol for its buffer, receives into it and calls `buffer_updated` at once, which
    copies out what arrived, so no two reads ever overlap in it. One a connection would keep 256 KiB resident for
    each, idle ones included (a hundred pooled connections: 25 MB)."""
    view: memoryview | None = getattr(_scratch, "view", None)
    if view is None:
        view = _scratch.view = memoryview(bytearray(READ_SIZE))
    return view


class Wire(asyncio.BufferedProtocol):
    """What the event loop received on one connection, not yet read; its end (EOF, or the error it broke with)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        # The loop once per connection: on Python 3.11 each asyncio.get_running_loop() is a getpid() system call
        # (a fork check), one more a request when a read waited on it (bench/serve_syscalls.py: 13.69 -> 12.62).
        self.loop = asyncio.get_running_loop()
        self._scratch = _scratch_buffer()
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._reading_paused = False
        self.eof = False
        self.lost = False
        self.error: BaseException | None = None  # what the connection broke with (an OSError, TLS error...)
        self._waiter: asyncio.Future[None] | None = None
        self._target: memoryview | None = None  # fill(): where the body's bytes go, and how far they came
        self._filled = 0
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None

    # ---- protocol callbacks ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is not a subclass

    def get_buffer(self, sizehint: int) -> memoryview:
        target = self._target
        if target is not None:
            return target[self._filled:]  # never past the body's declared end
        return self._scratch

    def buffer_updated(self, nbytes: int) -> None:
        if self._target is not None:
            self._filled += nbytes
            if self._filled == len(self._target):
                self._target = None
                self._wake()
            return
        self._pending.append(bytes(self._scratch[:nbytes]))
        self._pending_size += nbytes
        if self._pending_size > READ_HIGH_WATER and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        # As StreamReaderProtocol: half-closed, a request still being written goes on (an early answer is read),
        # except over TLS, which cannot be half-closed.
        return self.transport is None or self.transport.get_extra_info("sslcontext") is None

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.error is None:
            self.error = exc
        self.eof = self.lost = True
        self._wake()
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ---- the reader's side -------------------------------------------------------------------------------

    @property
    def unread(self) -> bool:
        return bool(self._pending)

    def take(self) -> bytes | None:
        """What arrived and was not read yet, joined (None: nothing)."""
        pending = self._pending
        if not pending:
            return None
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        self._pending_size = 0
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    async def wait(self) -> None:
        """Until something arrives, the connection ends, or a fill completes."""
        waiter = self._waiter = self.loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def fill(self, buffer: bytearray, filled: int) -> None:
        """Receive into `buffer` from `filled` on, until it is full (`filled_to`), in place. Only when nothing
        received is unread (the bytes would be out of order otherwise)."""
        assert not self._pending and filled < len(buffer)
        self._target = memoryview(buffer)
        self._filled = filled
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    @property
    def filled_to(self) -> int:
        return self._filled

    def stop_filling(self) -> None:
        self._target = None


class Conn:
    __slots__ = ("_poller", "fd", "idle_since", "key", "transport", "wire")

    def __init__(self, key: Key, transport: asyncio.Transport, wire: Wire) -> None:
        self.key = key
        self.transport = transport
        self.wire = wire
        self.idle_since = 0.0
        sock = transport.get_extra_info("socket")
        self.fd: int = sock.fileno() if sock is not None else -1
        self._poller: Any = None  # select.poll(), made on first use

    def alive(self) -> bool:
        wire = self.wire
        # Bytes unread (after an answer, or on an idle connection) spoil it: they are no answer to what is sent next.
        return not (wire.eof or wire.unread or wire.error is not None or self.transport.is_closing())

    def quiet(self) -> bool:
        """Nothing is waiting unread on the idle socket. The event loop reads a socket only between callbacks, so
        a server's close that just arrived may not show in alive() yet; sent a request, such a connection fails
        after the request was written, when it can no longer be sent again. (Well under a microsecond: one poll.)"""
        if self.fd < 0:
            return True
        try:
            if _poll is not None:
                if self._poller is None:  # one poll object for the connection's life: registered once
                    self._poller = _poll()
                    self._poller.register(self.fd, select.POLLIN)
                return not self._poller.poll(0)
            return not select.select([self.fd], [], [], 0)[0]
        except (OSError, ValueError):
            return False

    def abort(self) -> None:
        self.wire.stop_filling()
        with contextlib.suppress(Exception):  # already gone, or its loop closed: nothing left to free
            self.transport.abort()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.transport.close()


async def _wait(wire: Wire, timeout: float | None) -> None:
    """Until more bytes, the end or an error arrive on the connection (TimeoutError after `timeout`)."""
    if timeout is None:
        await wire.wait()
    else:
        async with asyncio.timeout(timeout):
            await wire.wait()


async def read(conn: Conn, timeout: float | None) -> bytes:
    """The bytes that arrived since the last read (waiting for some), b"" at the end of the connection."""
    wire = conn.wire
    try:
        while True:
            data = wire.take()
            if data is not None:
                return data
            if wire.error is not None:
                raise wire.error
            if wire.eof:
                return b""
            await _wait(wire, timeout)
    except TimeoutError:
        raise http_error("ReadTimeout", "Timed out waiting for the server's response.") from None
    except OSError as exc:  # reset, TLS error...
        raise http_error("ReadError", os_error(exc, "The connection broke while reading the response")) from None


async def fill(conn: Conn, buffer: bytearray, filled: int, timeout: float | None) -> None:
    """Receive the rest of `buffer` (from `filled` on) in place; a connection that ends first is an error."""
    wire = conn.wire
    wire.fill(buffer, filled)
    try:
        while wire.filled_to < len(buffer):
            if wire.error is not None:
                raise wire.error
            if wire.eof:
                raise http_error("RemoteProtocolError",
                                 "The server closed the connection before the end of the response body.")
            await _wait(wire, timeout)
    except TimeoutError:
        raise http_error("ReadTimeout", "Timed out waiting for the server's response.") from None
    except OSError as exc:
        raise http_error("ReadError", os_error(exc, "The connection broke while reading the response")) from None
    finally:
        wire.stop_filling()


async def drain(conn: Conn, timeout: float | None) -> None:
    """Until the socket takes what was written down to the transport's low-water mark (StreamWriter.drain)."""
    wire = conn.wire
    try:
        if wire.error is not None:
            raise wire.error
        if wire.lost:
            raise ConnectionResetError("Connection lost")
        if not wire._write_paused:
            return
        waiter = wire._drain_waiter = wire.loop.create_future()
        if timeout is None:
            await waiter
        else:
            async with asyncio.timeout(timeout):
                await waiter
        if wire.error is not None:
            raise wire.error
        if wire.lost:
            raise ConnectionResetError("Connection lost")
    except TimeoutError:
        raise http_error("WriteTimeout", "Timed out sending the request.") from None
    except OSError as exc:
        raise http_error("WriteError", os_error(exc, "The connection broke while sending the request")) from None


def os_error(exc: OSError, what: str) -> str:
    text = str(exc).strip()
    return f"{what}: {type(exc).__name__}: {text}" if text else f"{what} ({type(exc).__name__})."
