"""uvicorn's httptools protocol with one addition: a request head must arrive within `header_timeout` seconds.

Imports uvicorn (so only `serve()` and uvicorn's worker processes import this module). uvicorn bounds the idle
time between requests (`timeout_keep_alive`, armed after a response) but nothing bounds a connection that
opens and sends nothing, or half a request line, or headers one byte a minute: each holds a socket and a file
descriptor for ever (slowloris). Here a timer runs from the moment a connection opens, and again after each
response, until a request's headers are complete; when it fires, a client that had started a head gets a
408 OpenAI error body, and the connection is closed either way. Bodies have their own deadline
(server.body, `body_timeout`).
"""

from __future__ import annotations

import asyncio
import json
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_HEADER_TIMEOUT = 10.0


def _timeout_answer(seconds: float) -> bytes:
    body = json.dumps({"error": {
        "message": f"The request head (request line and headers) did not arrive within {seconds:g} s.",
        "type": "invalid_request_error", "param": None, "code": "request_timeout"}}).encode()
    return (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (len(body), body))


class HeadTimeoutProtocol(HttpToolsProtocol):
    # A class attribute because uvicorn builds protocols itself (and in each worker process): serve() and the
    # worker app factory set it from the settings before the first connection.
    header_timeout: ClassVar[float] = DEFAULT_HEADER_TIMEOUT

    _head_timer: asyncio.TimerHandle | None = None
    _head_started = False  # a byte of the awaited head has arrived

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_started = False
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_started:
            self.transport.write(_timeout_answer(self.header_timeout))
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is not None and data:
            self._head_started = True
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        cycle = self.cycle
        waiting = cycle is None or cycle.response_complete  # no pipelined request already has its head
        if waiting and not self.transport.is_closing():
            self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)
