"""The upstream connection pool: which connection a request gets, and where it goes afterwards.

One pool per transport, keyed by (scheme, host, port), under one `max_connections` limit. Callers beyond the
limit wait in FIFO order; idle connections are reused last-in first-out and closed after `keepalive_expiry`
seconds idle, by a timer that runs while any are idle. Opening connections and speaking HTTP over them is
upstream.transport's and upstream.http11's work. Imports upstream.http11, upstream.httperrors
(httpx's exceptions, httpx itself imported only to raise one) and the standard library.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from time import monotonic

from cfai_cli.upstream.http11 import Key
from cfai_cli.upstream.httperrors import http_error
from cfai_cli.upstream.wire import Conn

KEEPALIVE_EXPIRY = 5.0  # seconds an idle connection is kept (httpx's default)


class Pool:
    """Invariant: `_total` counts every connection that is open or being opened (checked out or idle). A
    place freed while callers wait is handed to the first of them, never decremented then re-taken, so
    nothing can slip in ahead of the queue. All bookkeeping is synchronous: no await can interrupt it.
    """

    def __init__(self, *, max_connections: int, keepalive_expiry: float = KEEPALIVE_EXPIRY) -> None:
        self.max_connections = max(1, max_connections)
        self.keepalive_expiry = keepalive_expiry
        self._idle: dict[Key, deque[Conn]] = {}
        # Connections whose response body is being read. Held here so that a response dropped unclosed is
        # collected before its connection: the body's finalizer then aborts the socket (asyncio's own
        # finalizer, if it ran first, would only warn about an unclosed stream).
        self._lent: set[Conn] = set()
        self._total = 0  # connections open or being opened, idle ones included
        self._waiters: deque[tuple[Key, asyncio.Future[Conn | None]]] = deque()
        self._prune_handle: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def connections(self) -> int:
        """Connections open or opening, idle ones included."""
        return self._total

    @property
    def idle_connections(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    async def acquire(self, key: Key, timeout: float | None, *, fresh: bool = False) -> Conn | None:
        """An idle connection to `key`, or None: a place is reserved for the caller to open a new one."""
        if self._closed:
            raise http_error("ConnectError", "The HTTP client was closed.")
        if not self._waiters:
            if not fresh:
                idle = self._idle.get(key)
                if idle:
                    now = monotonic()
                    while idle:
                        conn = idle.pop()
                        if now - conn.idle_since < self.keepalive_expiry and conn.alive() and conn.quiet():
                            return conn
                        conn.close()
                        self._total -= 1
            if self._total < self.max_connections:
                self._total += 1
                return None
            if self._evict_idle():
                return None
        waiter: asyncio.Future[Conn | None] = asyncio.get_running_loop().create_future()
        entry = (key, waiter)
        self._waiters.append(entry)
        try:
            if timeout is None:
                return await waiter
            async with asyncio.timeout(timeout):
                return await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                got = waiter.result()  # handed over just as we gave up: pass it on
                if got is None:
                    self.free_slot()
                else:
                    self.release(got, True)
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(entry)
            if isinstance(exc, TimeoutError):
                raise http_error("PoolTimeout", "Timed out waiting for a connection from the pool.") from None
            raise

    def lend(self, conn: Conn) -> None:
        """`conn` carries a response body now; release() or discard() ends the loan."""
        self._lent.add(conn)

    def release(self, conn: Conn, reusable: bool) -> None:
        """A connection whose response is complete: to the first waiter, to the idle pool, or closed."""
        self._lent.discard(conn)
        if not reusable or self._closed or not conn.alive():
            self.discard(conn)
            return
        while self._waiters:
            key, waiter = self._waiters.popleft()
            if waiter.done():
                continue
            if key == conn.key:
                waiter.set_result(conn)
            else:  # the first waiter wants another host: its place is this connection's
                conn.close()
                waiter.set_result(None)
            return
        conn.idle_since = monotonic()
        idle = self._idle.get(conn.key)
        if idle is None:
            idle = self._idle[conn.key] = deque()
        idle.append(conn)
        if self._prune_handle is None:
            self._schedule_prune(self.keepalive_expiry)

    def discard(self, conn: Conn) -> None:
        """Close a checked-out connection (broken, cancelled, not reusable) and free its place."""
        self._lent.discard(conn)
        conn.abort()
        self.free_slot()

    def free_slot(self) -> None:
        while self._waiters:
            _, waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the place passes to the waiter: _total unchanged
                return
        self._total -= 1

    def _evict_idle(self) -> bool:
        """Close the longest-idle connection to any host so its place can be used (the pool is full)."""
        oldest: deque[Conn] | None = None
        for idle in self._idle.values():
            if idle and (oldest is None or idle[0].idle_since < oldest[0].idle_since):
                oldest = idle
        if oldest is None:
            return False
        oldest.popleft().close()
        return True

    def _schedule_prune(self, delay: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._prune_handle = loop.call_later(delay + 0.05, self._prune)

    def _prune(self) -> None:
        """Close idle connections past their expiry or closed by the server; runs while any are idle."""
        self._prune_handle = None
        if self._closed:
            return
        now = monotonic()
        soonest: float | None = None
        for key in list(self._idle):
            idle = self._idle[key]
            kept: deque[Conn] = deque()
            for conn in idle:
                if now - conn.idle_since >= self.keepalive_expiry or not conn.alive():
                    conn.close()
                    self.free_slot()
                else:
                    kept.append(conn)
                    soonest = conn.idle_since if soonest is None else min(soonest, conn.idle_since)
            if kept:
                self._idle[key] = kept
            else:
                del self._idle[key]
        if soonest is not None:
            self._schedule_prune(max(0.0, soonest + self.keepalive_expiry - now))

    def close(self) -> None:
        """Close the idle connections and fail the waiters; checked-out ones close as their responses end."""
        self._closed = True
        if self._prune_handle is not None:
            self._prune_handle.cancel()
            self._prune_handle = None
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
                self._total -= 1
        self._idle.clear()
        while self._waiters:
            _, waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(http_error("ConnectError", "The HTTP client was closed."))
