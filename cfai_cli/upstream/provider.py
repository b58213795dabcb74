"""What every upstream client is to the router: a `Provider`, and where one request's waiting is counted.

Imports only the standard library. There is one provider per upstream type: `upstream.workers.WorkersAIClient`
(Cloudflare Workers AI: run, run raw, stream, model search), and the `ChatUpstream`s, which answer OpenAI chat
requests themselves: `upstream.openai_compat.OpenAICompatClient` (an OpenAI-compatible API, passed through)
and `upstream.anthropic.AnthropicClient` (the Anthropic Messages API, translated).
Their calls differ because the services speak to them differently (Workers AI needs translating, a
ChatUpstream does not), so the service asks which one it holds with `isinstance`; what they share is how the
router hands them to one attempt.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Literal, Protocol, Self, TypeVar

UpstreamType = Literal["cloudflare", "openai", "anthropic"]  # an upstream's `type` in the config, shown by /health
C = TypeVar("C")


class WaitLog(Protocol):
    """Where one request's time spent waiting on upstreams adds up (service.record.RequestRecord is one), for
    the proxy's x-cfai-overhead-ms: attempts up to their answer's headers, retry back-offs, first events; and
    where the neurons Workers AI reports for its answers add up (core.cost)."""

    upstream_wait: float

    def add_neurons(self, neurons: float) -> None: ...


class Waited:
    """`with Waited(log):` adds the time the block took to `log.upstream_wait` (nothing when `log` is None)."""

    __slots__ = ("_into", "_start")

    def __init__(self, into: WaitLog | None) -> None:
        self._into = into

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        if self._into is not None:
            self._into.upstream_wait += time.perf_counter() - self._start


class Provider(Protocol):
    """One key of one upstream, as the router holds it (a `Lane`'s client)."""

    def for_attempt(self, *, retry: bool, waits: WaitLog | None) -> Self:
        """The same client (its connections and counters) for one attempt of a failover walk: `retry` says
        whether it may retry a transient failure itself (not when another target waits behind it: failing
        over is quicker), and `waits` is where the request's upstream waiting is counted."""
        ...

    async def aclose(self) -> None: ...


class ChatUpstream(ABC):
    """An upstream that answers OpenAI chat requests itself: the body goes as the client sent it (the model
    name changed), the answer and chunks come back in OpenAI's shapes."""

    name: str

    @abstractmethod
    def for_attempt(self, *, retry: bool, waits: WaitLog | None) -> Self: ...

    @abstractmethod
    async def chat(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST a chat request; the `chat.completion` object."""

    @abstractmethod
    async def chat_stream(self, body: Mapping[str, Any]) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Open a streamed chat request (`stream: true` in body). Status and content type are checked before
        this returns, so those failures raise here, where the router can still fail over. Then the
        `chat.completion.chunk` objects, one list per read from the network (possibly empty), until the
        stream's end; the response is closed when the generator ends, fails or is closed."""

    @abstractmethod
    async def aclose(self) -> None: ...


def shallow_copy(client: C) -> C:
    """`copy.copy` of a client without the generic copy protocol (__reduce_ex__): ~0.5 µs instead of ~2, and
    `for_attempt` runs on every request."""
    clone: C = object.__new__(type(client))
    clone.__dict__.update(client.__dict__)
    return clone
