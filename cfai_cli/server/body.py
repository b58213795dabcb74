"""How a request body is allowed to arrive: within a deadline, and an early answer still reaches the client.

Imports starlette's ASGI types and errors; the outermost piece of the app's one layer (server.front). Two rules:

- the body must arrive within `body_timeout` seconds of the request head: a slow upload gets a 408 (raised
  from `receive`, so whichever layer is reading answers it) and frees its concurrency slot;
- an answer given before the body was read to its end (a 413, 415, 401, 408...) goes out at once with
  `Connection: close`, but the connection is held open a little while longer to read and discard what the
  client is still sending (at most DRAIN_BYTES, DRAIN_SECONDS, or DRAIN_IDLE without a byte). Closing a socket
  with unread data makes the kernel send a reset, and a reset can destroy the answer before the client
  reads it; a client that writes its whole body before reading (most HTTP libraries) would see "connection
  reset" instead of the 413. Without the bound, the server would swallow an endless upload.
"""

from __future__ import annotations

import asyncio

from starlette.types import Message, Receive, Scope, Send

from cfai_cli.errors import RequestTimeout

DRAIN_BYTES = 64 * 1024 * 1024
DRAIN_SECONDS = 5.0
DRAIN_IDLE = 1.0


def _declares_body(headers: list[tuple[bytes, bytes]]) -> tuple[bool, bool]:
    """(the request has a body, the client waits for `100 Continue` before sending it)."""
    has_body = expect = False
    for name, value in headers:
        if name == b"content-length":
            has_body = value.strip() not in (b"0", b"")
        elif name == b"transfer-encoding":
            has_body = True
        elif name == b"expect":
            expect = value.strip().lower() == b"100-continue"
    return has_body, expect


class _Upload:
    """One request body being read: its deadline, the task waiting in `receive` for it, if any, and how far it got."""

    __slots__ = ("asked", "deadline", "expect", "expired", "finished", "held", "loop", "waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop, deadline: float, expect: bool) -> None:
        self.loop = loop  # the request's: asked once (each get_running_loop is a getpid system call on 3.11)
        self.deadline = deadline
        self.expect = expect  # the client waits for `100 Continue` before sending the body
        self.expired = False
        self.waiting: asyncio.Task[object] | None = None
        self.finished = False  # the whole body has been received, or the client has gone
        self.asked = False  # the app asked for the body (so a client expecting 100-continue was told to send it)
        self.held = False  # the answer's last message is held back while the rest of the body is drained


class BodyGuard:
    """The two rules above, as steps server.front's one layer takes for each request that declares a body:
    `begin` (None for a request without one), `receive` and `sending` on its way through, `end` once the app is
    done, then `finish` (the drain and the held last message) when the app returned normally."""

    def __init__(self, *, body_timeout: float) -> None:
        self.body_timeout = body_timeout
        # One sweep over the bodies being read, a few times a deadline, instead of a timer per request
        # (a timer and its cancellation cost ~3 µs; the proxy's own work per request is a few hundred).
        self._uploads: set[_Upload] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweeper_loop: asyncio.AbstractEventLoop | None = None  # an app may outlive a loop (tests)
        self._tick = min(0.25, body_timeout / 8)

    def _watch(self, upload: _Upload) -> None:
        self._uploads.add(upload)
        loop = upload.loop
        if self._sweeper is None or self._sweeper_loop is not loop:
            self._sweeper = loop.call_later(self._tick, self._sweep)
            self._sweeper_loop = loop

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._sweeper_loop:
            return
        now = loop.time()
        for upload in [u for u in self._uploads if u.deadline <= now]:
            self._uploads.discard(upload)
            upload.expired = True
            if upload.waiting is not None:
                upload.waiting.cancel()  # the receive it waits in raises the 408 (receive)
        self._sweeper = loop.call_later(self._tick, self._sweep) if self._uploads else None

    def _too_slow(self) -> RequestTimeout:
        return RequestTimeout(f"The request body did not arrive within {self.body_timeout:g} s "
                              "(the proxy's body_timeout); the connection was too slow or stalled.")

    def begin(self, scope: Scope) -> _Upload | None:
        """The request's upload, if its head declares a body; its deadline runs from now."""
        has_body, expect = _declares_body(scope["headers"])
        if not has_body:
            return None
        loop = asyncio.get_running_loop()
        return _Upload(loop, loop.time() + self.body_timeout, expect)

    async def receive(self, upload: _Upload, receive: Receive) -> Message:
        """The next body message, or the 408 once the deadline has passed."""
        if upload.finished:
            return await receive()
        if upload.expired:
            raise self._too_slow()
        if not upload.asked:
            upload.asked = True
            self._watch(upload)
        upload.waiting = task = asyncio.current_task(upload.loop)
        try:
            message = await receive()
        except asyncio.CancelledError:
            if upload.expired and task is not None and task.uncancel() == 0:  # the sweep's, nobody else's
                raise self._too_slow() from None
            raise
        finally:
            upload.waiting = None
        if message["type"] != "http.request" or not message.get("more_body", False):
            upload.finished = True
            self._uploads.discard(upload)
        return message

    @staticmethod
    def sending(upload: _Upload, message: Message) -> Message:
        """What goes out for `message` while the body is not read to its end (only then is this called)."""
        if message["type"] == "http.response.start":
            # The body is not read to its end: the connection cannot carry another request.
            headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"connection"]
            return {**message, "headers": [*headers, (b"connection", b"close")]}
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            upload.held = True
            return {**message, "more_body": True}
        return message

    def end(self, upload: _Upload) -> None:
        self._uploads.discard(upload)

    async def finish(self, upload: _Upload, receive: Receive, send: Send) -> None:
        """After the app returned: the rest of the body read and discarded, then the held last message sent."""
        if upload.held:
            if upload.asked or not upload.expect:  # a client still waiting for 100 Continue sends nothing more
                await self._drain(receive)
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    async def _drain(receive: Receive) -> None:
        """Read and discard the rest of the body, within bounds; the answer is already on its way."""
        loop = asyncio.get_running_loop()
        until = loop.time() + DRAIN_SECONDS
        left = DRAIN_BYTES
        while left > 0:
            try:
                async with asyncio.timeout_at(min(until, loop.time() + DRAIN_IDLE)):
                    message = await receive()
            except TimeoutError:
                return
            if message["type"] != "http.request":
                return
            left -= len(message.get("body", b""))
            if not message.get("more_body", False):
                return
