"""What a Workers AI call gives back (upstream.workers): the answer shapes, and the two rules for a call that
ended without a usable answer — broken before its head (not resent: it may have been received) and a capacity 429
given up on (the client is told when to come back).

Imports stdlib, errors and upstream.httperrors (httpx's exceptions without importing httpx); and how a streamed
answer is read to its end, on the lean transport or through httpx.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from cfai_cli.errors import CfaiError, QuotaExceeded, RateLimited, UpstreamError, UpstreamTimeout, UpstreamUnanswered
from cfai_cli.upstream.deadline import Deadline
from cfai_cli.upstream.httperrors import caught, describe_http_error

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")


class Closable(Protocol):
    """An open answer (httpx.Response, or the lean transport's body)."""

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class UpstreamStream:
    """An open streaming answer: either SSE bytes to iterate, or a JSON result the model sent instead."""

    chunks: AsyncIterator[bytes] | None
    result: Any = None
    _response: Closable | None = None
    # What Workers AI reported in the answer's headers (or JSON result), already added to the request's record;
    # None: a reader of the events adds their `usage.neurons` instead (service.workers_stream).
    neurons: float | None = None

    async def aclose(self) -> None:
        """Close the answer. Whether its connection can serve again is the transport's to decide
        (upstream.network)."""
        if self._response is not None:
            await self._response.aclose()


@dataclass(slots=True)
class RawAnswer:
    """A /ai/run answer that may be bytes (`body`) or an unwrapped JSON `result`."""

    content_type: str
    body: bytes | None = None
    result: Any = None
    # result.image when it came as canonical base64 (core.workers.image_cut): a view of the answer's bytes (ASCII)
    image: memoryview | None = None

    def __iter__(self) -> Iterator[Any]:
        """Unpacks as (body, content_type, result)."""
        return iter((self.body, self.content_type, self.result))



def timeouts(seconds: float) -> dict[str, Any]:
    """httpx's per-request timeouts (connect, read, write, pool), as AsyncClient would set them."""
    return {"timeout": {"connect": seconds, "read": seconds, "write": seconds, "pool": seconds}}


async def answered(sending: Awaitable[T]) -> T:
    """The response head of a request being sent. A connection that breaks after the request went out and
    before any answer leaves it unknown whether Workers AI received it, so it is not resent there (a POST is
    never sent twice, and never billed twice): `UpstreamUnanswered` is not retried. Failures before anything
    was sent (connect, pool, write) stay retryable; so do answers that break or fail after their head (the
    upstream answered, and a new request is a deliberate one, as for a 5xx)."""
    try:
        return await sending
    except caught("ReadError", "RemoteProtocolError") as exc:
        raise UpstreamUnanswered(f"The connection to Workers AI broke before it answered ({describe_http_error(exc)});"
                                 " not resent, since it may have been received.") from None


def with_retry_after(error: CfaiError) -> CfaiError:
    """A capacity 429 given up on tells the client when to come back, even if Workers AI did not say."""
    if isinstance(error, RateLimited) and not isinstance(error, QuotaExceeded) and error.retry_after is None:
        error.retry_after = 1.0
    return error


def response_chunks(response: httpx.Response, deadline: float, timeout: float) -> AsyncIterator[bytes]:
    """A streamed answer's bytes read through httpx (`stream_chunks`)."""
    import httpx

    body = response.stream
    # No Content-Encoding (none is asked for): the body's bytes are the answer's, read from the transport's
    # stream without aiter_bytes' no-op decoder, its two chunkers and aiter_raw, two generators more a
    # stream (~70k of a streamed request's ~2.3 M instructions, callgrind). Encoded, httpx decodes it.
    source = body if isinstance(body, httpx.AsyncByteStream) and "content-encoding" not in response.headers \
        else response.aiter_bytes()
    return stream_chunks(source, response.aclose, deadline, timeout)


class StreamChunks:
    """A streamed answer's non-empty chunks until `deadline` (the call's `timeout` from its start); then closed (at
    its end, a timeout, a broken connection, any failure of a read, and by `aclose`). Each read's deadline is a
    `Deadline` (asyncio.timeout_at's rules; the loop asked once a stream): ~14k instructions a read instead of ~26k,
    and no getpid (upstream.deadline; docs/performance.md, "First event round 8").

    An async iterator, not an async generator: a stream's reader stops at `[DONE]` without reading on
    (service.workers_stream), so a generator here was left suspended, and when it was freed the loop's finalizer
    hook closed it: a `call_soon_threadsafe` (an eventfd write and read), a task and a loop turn for every stream,
    on top of its first-iteration hook and each item's `asend` (docs/performance.md, "First event round 9"). The
    stream's owner closes the answer (`UpstreamStream.aclose`); closing it twice is harmless."""

    __slots__ = ("_close", "_closed", "_deadline", "_iterator", "_loop", "_ready", "_timeout")

    def __init__(self, source: AsyncIterable[bytes], close: Callable[[], Awaitable[None]], deadline: float,
                 timeout: float, ready: Callable[[], bytes | None] | None = None) -> None:
        self._iterator = source.__aiter__()
        self._ready = ready  # the source's bytes already received, if it can tell (LeanBody.ready), else None
        self._close = close
        self._deadline, self._timeout = deadline, timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def __aiter__(self) -> StreamChunks:
        return self

    async def __anext__(self) -> bytes:
        if self._closed:
            raise StopAsyncIteration
        try:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            ready = self._ready
            while True:
                # Bytes already received need no wait, so no deadline's timer (its `call_at` and cancel, ~14k
                # instructions): what `__anext__` gives at once is what a read under the deadline would give.
                chunk = ready() if ready is not None else None
                if chunk:
                    return chunk
                try:
                    with Deadline(self._deadline, loop):
                        chunk = await self._iterator.__anext__()
                except TimeoutError:
                    raise UpstreamTimeout(
                        f"Workers AI did not finish the stream within {self._timeout:g} s (set --timeout or "
                        "CFAI_TIMEOUT).") from None
                except caught("HTTPError") as exc:
                    raise UpstreamError(
                        f"The connection to Workers AI broke mid-stream ({describe_http_error(exc)}).") from None
                if chunk:
                    return chunk
        except BaseException:  # the end (StopAsyncIteration), a failure, a cancellation: closed, as a generator's
            await self.aclose()  # `finally` would
            raise

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._close()


def stream_chunks(source: AsyncIterable[bytes], close: Callable[[], Awaitable[None]], deadline: float,
                  timeout: float, ready: Callable[[], bytes | None] | None = None) -> StreamChunks:
    """`StreamChunks` of `source`, closed by `close`."""
    return StreamChunks(source, close, deadline, timeout, ready)
