"""The Workers AI REST client: the only code that knows URLs, auth headers, retries and deadlines.

Imports stdlib, errors, core and upstream (httpx when a call needs httpx's objects). Every call has one total
deadline (retries included); only transient failures (connection errors, 5xx, capacity 3040) are retried, with
exponential backoff. Every request is built here and goes to the one transport upstream.network chose (tests and
`--offline` pass their own `httpx.AsyncBaseTransport`; nothing else is mocked). On the lean transport (the
default) JSON and streamed calls go out as bytes (upstream.lean's `Lean.open`), and httpx is not imported until
a multipart or GET call, or a failure, needs it (upstream.httperrors: ~100 M instructions of `cfai chat hi`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar

from cfai_cli import __version__
from cfai_cli.core import jsonfast
from cfai_cli.core.catalog import is_account_id
from cfai_cli.core.cost import reported_neurons
from cfai_cli.core.workers.envelope import decode_json_result, is_retryable
from cfai_cli.errors import (
    CfaiError,
    ConfigError,
    UpstreamError,
    UpstreamTimeout,
)
from cfai_cli.upstream.deadline import Deadline
from cfai_cli.upstream.http11 import Heads, header_map
from cfai_cli.upstream.httperrors import caught, describe_http_error
from cfai_cli.upstream.lean import Lean, lean_for
from cfai_cli.upstream.provider import Waited, WaitLog, shallow_copy
from cfai_cli.upstream.whole import aread
from cfai_cli.upstream.workers_account import AccountCalls
from cfai_cli.upstream.workers_answers import (
    RawAnswer,
    UpstreamStream,
    answered,
    response_chunks,
    stream_chunks,
    timeouts,
    with_retry_after,
)
from cfai_cli.upstream.workers_heads import ClientHeaders

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")


class WorkersAIClient(AccountCalls):
    """Calls to models (`run`, `run_raw`, `stream`) and the machinery every call shares (headers, the transport,
    retries within one deadline); the account's other endpoints are upstream.workers_account's `AccountCalls`."""

    def __init__(
        self,
        *,
        account_id: str,
        api_token: str,
        api_base: str,
        timeout: float,
        max_retries: int = 3,
        transport: httpx.AsyncBaseTransport | Lean | None = None,
        max_connections: int = 256,
        fast_http: bool = True,
    ) -> None:
        if not is_account_id(account_id):
            raise ConfigError("CLOUDFLARE_ACCOUNT_ID looks wrong: expected the 32-character hex id of your account.")
        self._api_base = api_base.rstrip("/")
        self._base = f"{self._api_base}/accounts/{account_id}/ai"
        self.timeout = timeout
        self.max_retries = max_retries
        self._retried = [0]  # transient failures retried so far (a metric), shared with for_attempt's copies
        self._retry = True  # this attempt may retry transient failures (see for_attempt)
        self._waits: WaitLog | None = None  # where this attempt's waiting is counted
        # Requests are built here and handed straight to the transport: httpx.AsyncClient's layer (merging
        # URL, headers and cookies, auth and redirect machinery, the cookie jar) was ~20% of the proxy's CPU.
        # The lean transport (not wrapped for --debug) carries JSON and streamed calls as bytes, without httpx's
        # Request and Response objects (Lean.open); the same head and body go out as with them (http11.Heads).
        self._lean = lean_for(transport, fast_http=fast_http, max_connections=max_connections)
        # httpx's transport (choose_transport; over the lean one's pool when there is one), made on first use:
        # a one-element list shared with for_attempt's copies.
        self._http: list[httpx.AsyncBaseTransport] = []
        self._given, self._fast_http, self._max_connections = transport, fast_http, max_connections
        if self._lean is None:
            self._transport  # noqa: B018 - made now, as before: a given transport or httpx's own
        self._heads = Heads()
        self._h = ClientHeaders(api_token, f"cfai/{__version__}")

    @property
    def _transport(self) -> httpx.AsyncBaseTransport:
        """The httpx transport for calls built as httpx requests (multipart, GET, any call without a lean one)."""
        if not self._http:
            from cfai_cli.upstream import network

            given = self._lean if self._lean is not None else self._given
            self._http.append(network.choose_transport(given, fast_http=self._fast_http,
                                                       max_connections=self._max_connections))
        return self._http[0]

    @property
    def retries(self) -> int:
        """Transient failures retried so far (a metric)."""
        return self._retried[0]

    def for_attempt(self, *, retry: bool, waits: WaitLog | None) -> Self:
        """This client for one attempt (upstream.provider.Provider): a shallow copy, so it shares the
        connections and the retry count, with its own retry permission and wait log."""
        bound = shallow_copy(self)
        bound._retry, bound._waits = retry, waits
        return bound

    async def aclose(self) -> None:
        if self._http:
            await self._http[0].aclose()
        if self._lean is not None:
            await self._lean.aclose()  # the same pool again when httpx's seam was put over it: closing is idempotent

    # ---- public calls ----------------------------------------------------------------------------

    async def run(self, model: str, body: Mapping[str, Any], *, affinity: str | None = None,
                  vectors: bool | Literal["text"] = False) -> Any:
        """POST /ai/run/{model} with a JSON body; the unwrapped `result`. `affinity` is sent as
        `x-session-affinity` (prefix-cache routing, reference §2.11; core.affinity). `vectors`: an embeddings
        call (core.workers.vector_cut, imported only then: `cfai chat` never needs it); "text": only the
        vectors' text is wanted, not their floats."""
        url = f"{self._base}/run/{model}"

        async def attempt(remaining: float) -> Any:
            if self._lean is not None:  # vectors: a big answer is checked in the buffer it was received into
                status, headers, content = await self._lean_read(url, jsonfast.dumps(body), affinity,
                                                                 buffer=vectors is not False)
                return self._decoded(status, headers, content, model, vectors)
            return await self._json_answer(self._request(url, body, remaining, affinity), model, vectors)

        return await self._with_retries(attempt)

    async def _json_answer(self, request: httpx.Request, model: str,
                           vectors: bool | Literal["text"] = False) -> Any:
        """Send one attempt of a JSON call; the unwrapped `result`, with the neurons it reports noted."""
        response = await answered(self._transport.handle_async_request(request))
        try:
            content = await aread(response)
        finally:
            await response.aclose()
        return self._decoded(response.status_code, response.headers, content, model, vectors)

    async def _lean_read(self, url: str, payload: bytes, affinity: str | None, *,
                         buffer: bool = False) -> tuple[int, dict[str, str], bytes | bytearray]:
        """One attempt of a JSON POST on the lean transport (`_json_answer`'s request as bytes: http11.Heads):
        the answer's status, headers (as httpx.Headers.get reads them) and whole body. No per-wait timeouts:
        httpx's four, each `remaining` from when its wait starts, end after the attempt's deadline
        (`_with_retries`' timeout scope), which ends every wait first with the same UpstreamTimeout; a timeout
        scope per read was ~4 µs a call. A body with a Content-Encoding (never asked for) is decoded by httpx,
        as the httpx way does."""
        assert self._lean is not None
        key, head = self._heads.head(url, self._h.block_for(affinity), len(payload))
        answer = await answered(self._lean.open(key, head, payload, None))
        exchange = answer.exchange
        headers = header_map(exchange.headers)
        content: bytes | bytearray
        try:
            if "content-encoding" in headers:
                from cfai_cli.upstream.transport import as_response

                content = await aread(as_response(answer))
            elif buffer:  # an image's or vectors' answer in one buffer made at its length (LeanBody.read_buffer)
                content = await answer.read_buffer()
            else:
                content = await answer.read()
        finally:
            await answer.aclose()
        return exchange.status, headers, content

    def _decoded(self, status: int, headers: Mapping[str, str], content: bytes | bytearray, model: str,
                 vectors: bool | Literal["text"]) -> Any:
        """A JSON answer's unwrapped `result` (or its error raised), with the neurons it reports noted."""
        content_type = headers.get("content-type", "")
        if vectors:
            from cfai_cli.core.workers.vector_cut import decode_vectors_result

            result = decode_vectors_result(status, content_type, content, headers, model=model,
                                           floats=vectors is True)
        else:
            assert isinstance(content, bytes)  # read(), not read_buffer()
            result = decode_json_result(status, content_type, content, headers, model=model)
        self._note_neurons(headers, result)
        return result

    async def run_raw(
        self,
        model: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        content_type: str | None = None,
        form: Mapping[str, str] | None = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> RawAnswer:
        """POST /ai/run/{model} for models that take or give bytes (images, audio).

        The body is JSON, raw bytes with their content type, or multipart form fields and files. A JSON
        answer is unwrapped into `result`; any other successful answer is kept as bytes with its type.
        """
        url = f"{self._base}/run/{model}"
        if self._lean is not None and json_body is not None and content is None and form is None and files is None \
                and params is None:
            # A JSON body alone (an image model's prompt) goes on the lean transport as bytes, as `run`'s calls do:
            # not through httpx's Response, whose reading held each 1.3 MB image twice (issue 25, round 7).
            payload = jsonfast.dumps(json_body)

            async def lean(remaining: float) -> RawAnswer:
                return self._raw_answer(*await self._lean_read(url, payload, None, buffer=True), model)

            return await self._with_retries(lean)
        import httpx

        if content is not None:
            headers = self._h.plain().copy()
            headers["Content-Type"] = content_type or "application/octet-stream"
        else:
            headers = self._h.json() if json_body is not None and form is None and files is None else self._h.plain()

        async def attempt(remaining: float) -> RawAnswer:
            if form is not None or files is not None:
                # Plain fields go in as (None, value) parts so the body is multipart even without files
                # (flux-2 wants multipart for a prompt alone, reference §5); httpx writes the boundary.
                parts: dict[str, Any] = {name: (None, value) for name, value in (form or {}).items()}
                parts.update(files or {})
                request = httpx.Request("POST", url, files=parts, params=params, headers=headers,
                                        extensions=timeouts(remaining))
            else:
                payload = content if content is not None else b"" if json_body is None else jsonfast.dumps(json_body)
                request = httpx.Request("POST", url, content=payload, headers=headers, params=params,
                                        extensions=timeouts(remaining))
            response = await answered(self._transport.handle_async_request(request))
            try:
                raw = await aread(response)
            finally:
                await response.aclose()
            return self._raw_answer(response.status_code, response.headers, raw, model)

        return await self._with_retries(attempt)

    def _raw_answer(self, status: int, headers: Mapping[str, str], raw: bytes | bytearray, model: str) -> RawAnswer:
        """`run_raw`'s answer: bytes with their type, or the unwrapped `result` (its image as base64 text when it is
        one), with the neurons it reports noted. core.workers.image_cut (and its raw_member) is imported here, on
        the first such answer: a chat's one-shot never reads one (~1 M instructions of `cfai chat hi`)."""
        from cfai_cli.core.workers.image_cut import decode_image_result

        body, kind, result, image = decode_image_result(status, headers.get("content-type", ""), raw, headers,
                                                        model=model)
        self._note_neurons(headers, result)
        return RawAnswer(content_type=kind, body=body, result=result, image=image)

    async def stream(self, model: str, body: Mapping[str, Any], *, affinity: str | None = None) -> UpstreamStream:
        """POST /ai/run/{model} with `stream: true`; retried until the first byte, never after."""
        url = f"{self._base}/run/{model}"
        deadline = asyncio.get_running_loop().time() + self.timeout

        async def attempt(remaining: float) -> UpstreamStream:
            if self._lean is not None:
                return await self._lean_stream(url, jsonfast.dumps(body), affinity, model, deadline)
            request = self._request(url, body, remaining, affinity)
            response = await answered(self._transport.handle_async_request(request))
            content_type = response.headers.get("content-type", "")
            if response.status_code >= 400 or "text/event-stream" not in content_type:
                return await self._whole(response.status_code, response.headers, partial(aread, response),
                                         response.aclose, model)
            return UpstreamStream(chunks=response_chunks(response, deadline, self.timeout), _response=response,
                                  neurons=self._note_neurons(response.headers, None))

        return await self._with_retries(attempt, deadline=deadline)

    async def _lean_stream(self, url: str, payload: bytes, affinity: str | None, model: str,
                           deadline: float) -> UpstreamStream:
        """`stream`'s attempt on the lean transport: the same request bytes, the same reading of the answer (no
        per-wait timeouts, as in `_lean_read`: the attempt's deadline, then each chunk's, ends every wait first)."""
        assert self._lean is not None
        block = self._h.block_for(affinity)
        key, head = self._heads.head(url, block, len(payload))
        answer = await answered(self._lean.open(key, head, payload, None))
        exchange = answer.exchange
        headers = header_map(exchange.headers)
        content_type = headers.get("content-type", "")
        if exchange.status >= 400 or "text/event-stream" not in content_type:
            return await self._whole(exchange.status, headers, answer.read, answer.aclose, model)
        if "content-encoding" in headers:  # never asked for: httpx decodes it, as it did before
            from cfai_cli.upstream.transport import as_response

            response = as_response(answer)
            return UpstreamStream(chunks=response_chunks(response, deadline, self.timeout), _response=response,
                                  neurons=self._note_neurons(headers, None))
        return UpstreamStream(chunks=stream_chunks(answer, answer.aclose, deadline, self.timeout, answer.ready),
                              _response=answer, neurons=self._note_neurons(headers, None))

    async def _whole(self, status: int, headers: Mapping[str, str], read: Callable[[], Awaitable[bytes]],
                     close: Callable[[], Awaitable[None]], model: str) -> UpstreamStream:
        """A streamed call's answer that is not an event stream (an error, or a JSON answer instead), read whole
        and decoded as a JSON call's: the same for the lean and the httpx way."""
        try:
            raw = await read()
        finally:
            await close()
        result = decode_json_result(status, headers.get("content-type", ""), raw, headers, model=model)
        return UpstreamStream(chunks=None, result=result, neurons=self._note_neurons(headers, result))

    # ---- machinery -------------------------------------------------------------------------------

    def _note_neurons(self, headers: Mapping[str, str], result: Any) -> float | None:
        """The neurons Workers AI reported for an answer (its `cf-ai-neurons` header, else `usage.neurons` in its
        result), added to the request's record; None if it reported none."""
        neurons = reported_neurons(headers.get("cf-ai-neurons"), result)
        if neurons is not None and self._waits is not None:
            self._waits.add_neurons(neurons)
        return neurons

    def _request(self, url: str, body: Mapping[str, Any], timeout: float, affinity: str | None) -> httpx.Request:
        """A JSON POST as httpx.AsyncClient would build it (compact UTF-8 JSON, the same headers)."""
        import httpx

        return httpx.Request("POST", self._h.url(url), headers=self._h.json(affinity), content=jsonfast.dumps(body),
                             extensions=timeouts(timeout))

    async def _with_retries(
        self, attempt: Callable[[float], Awaitable[T]], *, deadline: float | None = None
    ) -> T:
        loop = asyncio.get_running_loop()
        deadline = deadline if deadline is not None else loop.time() + self.timeout
        tries = 0
        while True:
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                with Deadline(deadline, loop), Waited(self._waits):
                    return await attempt(remaining)
            except caught("TimeoutException", also=(TimeoutError,)):
                raise UpstreamTimeout(
                    f"Workers AI did not answer within {self.timeout:g} s (set --timeout or CFAI_TIMEOUT)."
                ) from None
            except caught("HTTPError") as exc:
                error: CfaiError = UpstreamError(f"Could not reach Workers AI: {describe_http_error(exc)}.")
            except CfaiError as exc:
                error = exc
            tries += 1
            if not self._retry or not is_retryable(error) or tries > self.max_retries:
                raise with_retry_after(error)
            delay = min(8.0, 0.25 * 2 ** (tries - 1)) * (0.5 + random.random())
            if error.retry_after is not None:
                delay = max(delay, error.retry_after)
            if loop.time() + delay >= deadline:
                raise with_retry_after(error)
            self._retried[0] += 1
            with Waited(self._waits):
                await asyncio.sleep(delay)
