"""uvicorn's httptools protocol with one addition: a request head must arrive within `header_timeout` seconds.

Imports uvicorn (so only `serve()` and uvicorn's worker processes import this module). uvicorn bounds the idle
time between requests (`timeout_keep_alive`, armed after a response) but nothing bounds a connection that
opens and sends nothing, or half a request line, or headers one byte a minute: each holds a socket and a file
descriptor for ever (slowloris). Here a timer runs from the moment a connection opens, and again after each
response, until a request's headers are complete; when it fires, a client that had started a head gets a
408 OpenAI error body, and the connection is closed either way. Bodies have their own deadline
(server.body, `body_timeout`).

A second change: a response's head leaves with its first body write (`HeadWithBody`). uvicorn writes the
status line and headers the moment the app sends `http.response.start`, and each body message in a write of
its own, so every answer was at least two writes, two TCP segments and two wake-ups of the client: a JSON
answer, and a stream's headers before its first event, which the client then waits for. The head is now held
until the first body write (the app sends it right after, without waiting: a JSON body, a stream's primed
first events) or, if none comes, until the end of the event loop's iteration, so nothing waits on it.
"""

from __future__ import annotations

import asyncio
import json
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

DEFAULT_HEADER_TIMEOUT = 10.0


def _timeout_answer(seconds: float) -> bytes:
    body = json.dumps({"error": {
        "message": f"The request head (request line and headers) did not arrive within {seconds:g} s.",
        "type": "invalid_request_error", "param": None, "code": "request_timeout"}}).encode()
    return (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (len(body), body))


class HeadWithBody:
    """What a request's cycle writes to: its transport, with the response head held for the first body write.

    uvicorn's cycle writes the head as its first write once `response_started` is set (a `100 Continue` is
    written before that, and goes at once); every later write goes out with the held head in front, and a head
    that nothing follows goes out when the loop comes round (`call_soon`), or before the connection closes.
    Measured (docs/performance.md, 2026-12-02): one write system call fewer per answer (a JSON chat 3 -> 2, with
    the request to Workers AI), and a stream's first event reaches the client with its headers instead of a
    client wake-up (~50-100 µs) later; ~5k more instructions of Python per answer (callgrind, through uvicorn).
    """

    __slots__ = ("_cycle", "_head", "_held", "_loop", "_transport")

    JOIN_BELOW = 256 * 1024  # a larger body is written after the head, not copied into one buffer with it

    def __init__(self, transport: asyncio.Transport, cycle: RequestResponseCycle,
                 loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._cycle = cycle
        self._loop = loop
        self._head: bytes | None = None
        self._held = False  # the head has been held (once per cycle)

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            if len(data) < self.JOIN_BELOW:
                self._transport.write(head + data)
                return
            self._transport.write(head)
        elif not self._held and self._cycle.response_started:
            self._held = True
            self._head = data
            self._loop.call_soon(self.flush)
            return
        self._transport.write(data)

    def flush(self) -> None:
        head, self._head = self._head, None
        if head is not None and not self._transport.is_closing():
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()


class HeadTimeoutProtocol(HttpToolsProtocol):
    # A class attribute because uvicorn builds protocols itself (and in each worker process): serve() and the
    # worker app factory set it from the settings before the first connection.
    header_timeout: ClassVar[float] = DEFAULT_HEADER_TIMEOUT

    # The head deadline is kept lazily: arming sets `_head_deadline` and starts a timer only when none is pending;
    # disarming clears the deadline and leaves the timer to find nothing awaited when it fires (then it stops),
    # or a later deadline (then it waits on for it). A connection answering request after request so meets one
    # timer every header_timeout instead of one made after each answer and cancelled at the next head (~4k
    # instructions a request on uvloop, callgrind; docs/performance.md, "Chat at c=1 round 7").
    _head_timer: asyncio.TimerHandle | None = None
    _head_deadline: float | None = None  # loop time by which the awaited head must be complete; None: none awaited
    _head_started = False  # a byte of the awaited head has arrived

    def _arm_head_timer(self) -> None:
        self._head_started = False
        self._head_deadline = deadline = self.loop.time() + self.header_timeout
        if self._head_timer is None:
            self._head_timer = self.loop.call_at(deadline, self._head_due)

    def _disarm_head_timer(self) -> None:
        self._head_deadline = None

    def _head_due(self) -> None:
        self._head_timer = None
        deadline = self._head_deadline
        if deadline is None:
            return  # the head came in time; the next arming starts a timer again
        if deadline > self.loop.time():  # armed again since this timer started: wait for that deadline
            self._head_timer = self.loop.call_at(deadline, self._head_due)
            return
        self._head_deadline = None
        self._head_timed_out()

    def _head_timed_out(self) -> None:
        if self.transport.is_closing():
            return
        if self._head_started:
            self.transport.write(_timeout_answer(self.header_timeout))
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._head_deadline is not None and data:
            self._head_started = True
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        before = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not before and cycle is not None:  # a new request (not an upgrade): its writes, see HeadWithBody
            cycle.transport = HeadWithBody(self.transport, cycle, self.loop)  # type: ignore[assignment]

    def on_response_complete(self) -> None:
        super().on_response_complete()
        cycle = self.cycle
        waiting = cycle is None or cycle.response_complete  # no pipelined request already has its head
        if waiting and not self.transport.is_closing():
            self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_deadline = None
        if self._head_timer is not None:  # nothing left to time: the protocol is not kept alive by its timer
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)
