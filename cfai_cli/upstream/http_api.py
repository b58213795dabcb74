"""What the JSON-over-HTTP provider clients share (OpenAI-compatible, Anthropic): one transport, one deadline
per call, wait accounting, capped error bodies, error mapping and key scrubbing.

No translation and no retries (the router fails over between targets). One deadline per call covers connect
and the whole body or stream. Every failure becomes a cfai error that names the upstream and never holds the
API key. Imports httpx, stdlib, errors, core, upstream.provider (wait accounting), upstream.network (its one
transport) and upstream.workers (error words).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

import httpx

from cfai_cli import __version__
from cfai_cli.core import jsonfast
from cfai_cli.core.sse import SSEDecoder, SSEEvent
from cfai_cli.core.workers.envelope import parse_retry_after
from cfai_cli.errors import (
    CfaiError,
    ConfigError,
    InvalidRequest,
    ModelNotFound,
    QuotaExceeded,
    RateLimited,
    RequestTooLarge,
    UpstreamAuthError,
    UpstreamError,
    UpstreamStreamError,
    UpstreamTimeout,
)
from cfai_cli.upstream.network import choose_transport, describe_http_error
from cfai_cli.upstream.provider import Waited, WaitLog, shallow_copy
from cfai_cli.upstream.whole import aread

T = TypeVar("T")
_ERROR_BODY_LIMIT = 64 * 1024  # an error page is read up to this much, never whole
_EXCERPT = 300  # characters of a provider's text kept in a message
_MIN_SCRUBBED_KEY = 8  # shorter "keys" are placeholders ("ollama", "x"); scrubbing them would mangle words
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_SPACES = re.compile(r"\s+")
OVERLOADED = "overloaded_error"  # Anthropic's 529: a capacity failure (errors.CAPACITY_UPSTREAM_CODES)


class HttpApiClient:
    """The shared machinery; a subclass adds its calls (and says how its streams end)."""

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        headers: Mapping[str, str],
        secret: str | None,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None,
        max_connections: int,
        fast_http: bool,
        example_url: str,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{name}: base_url must be an http:// or https:// URL (e.g. {example_url}).")
        self.name = name
        self.timeout = timeout
        self._base = base_url.rstrip("/")
        self._secret = secret if secret and len(secret) >= _MIN_SCRUBBED_KEY else None
        self._waits: WaitLog | None = None  # where this attempt's waiting is counted (see for_attempt)
        # Built once per Accept; requests go straight to the transport (no httpx.AsyncClient, as in workers).
        # Accept-Encoding as httpx's client sent it: these providers may compress, and httpx.Response decodes.
        common = {"User-Agent": f"cfai/{__version__}", "Accept-Encoding": "gzip, deflate",
                  "Content-Type": "application/json", **headers}
        self._headers = {accept: httpx.Headers({**common, "Accept": accept})
                         for accept in ("application/json", "text/event-stream")}
        self._transport = choose_transport(transport, fast_http=fast_http, max_connections=max_connections)

    def for_attempt(self, *, retry: bool, waits: WaitLog | None) -> Self:
        """This client for one attempt (upstream.provider.Provider): it shares the connections and counts its
        waiting in `waits`. `retry` changes nothing: this client never retries (the router fails over)."""
        bound = shallow_copy(self)
        bound._waits = waits
        return bound

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def post_json(self, path: str, body: Mapping[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """POST base_url + path with a JSON body; the decoded JSON object."""
        limit = self.timeout if timeout is None else timeout

        async def work(remaining: float) -> tuple[str, bytes]:
            response = await self._send(path, body, remaining, accept="application/json")
            try:
                return response.headers.get("content-type", ""), await aread(response)
            finally:
                await response.aclose()

        content_type, raw = await self._guarded(work, limit, asyncio.get_running_loop().time() + limit)
        return self._json_object(content_type, raw)

    async def open_stream(self, path: str, body: Mapping[str, Any], *, end_data: str | None = None,
                          end_type: str | None = None, timeout: float | None = None
                          ) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Open a streaming POST (the caller sets "stream": true in body).

        Status and content type are checked before this returns, so failures raise here, where the router can
        still fail over. Returns an async generator of the SSE events' JSON payloads, a list per read from the
        network, ending at the event whose data is `end_data` (OpenAI's `[DONE]`, not passed on) or whose
        `type` is `end_type` (Anthropic's `message_stop`, passed on); a stream that ends before it ended early.
        The response is closed when the generator finishes, raises, or is closed early.
        """
        limit = self.timeout if timeout is None else timeout
        deadline = asyncio.get_running_loop().time() + limit

        async def work(remaining: float) -> httpx.Response:
            response = await self._send(path, body, remaining, accept="text/event-stream")
            try:
                content_type = response.headers.get("content-type", "")
                if "text/event-stream" not in content_type.lower():
                    raise self._not_a_stream(content_type, await _read_capped(response))
            except BaseException:
                await response.aclose()
                raise
            return response

        response = await self._guarded(work, limit, deadline)
        events = self._events(response, limit, deadline, end_data, end_type)
        try:
            await anext(events)  # runs to the priming yield without suspending
        except BaseException:
            await response.aclose()
            raise
        return events

    async def _events(self, response: httpx.Response, limit: float, deadline: float, end_data: str | None,
                      end_type: str | None) -> AsyncGenerator[list[dict[str, Any]], None]:
        chunks = response.aiter_bytes()
        decoder = SSEDecoder()
        try:
            # The first yield is consumed by open_stream itself: a started generator runs its `finally`
            # (closing the response) on aclose() or garbage collection, an unstarted one would not.
            yield []
            while True:
                chunk = await self._next_chunk(chunks, limit, deadline)
                batch: list[dict[str, Any]] = []
                for event in decoder.decode(chunk) if chunk is not None else decoder.flush():
                    data = event.data.strip()
                    if not data:
                        continue
                    if data == end_data:
                        yield batch
                        return
                    try:
                        payload = self.event_json(event, data)
                    except UpstreamStreamError:
                        if batch:
                            yield batch  # what came before the bad event still reaches the client
                        raise
                    batch.append(payload)
                    if end_type is not None and payload.get("type") == end_type:
                        yield batch
                        return
                yield batch
                if chunk is None:
                    raise UpstreamStreamError(f"{self.name} ended the stream early "
                                              f"(no {end_type or f'data: {end_data}'}).")
        finally:
            if isinstance(chunks, AsyncGenerator):
                await chunks.aclose()
            await response.aclose()

    # ---- machinery -------------------------------------------------------------------------------

    async def _send(self, path: str, body: Mapping[str, Any], remaining: float, *, accept: str) -> httpx.Response:
        """A 2xx response with its body unread, or the mapped error (the response then closed)."""
        url = f"{self._base}/{path.lstrip('/')}"
        request = httpx.Request("POST", url, content=jsonfast.dumps(body), headers=self._headers[accept], extensions={
            "timeout": {"connect": remaining, "read": remaining, "write": remaining, "pool": remaining}})
        response = await self._transport.handle_async_request(request)
        if 200 <= response.status_code < 300:
            return response
        try:
            raw = await _read_capped(response)
        finally:
            await response.aclose()
        raise self._status_error(response.status_code, response.headers, raw)

    async def _guarded(self, work: Callable[[float], Awaitable[T]], limit: float, deadline: float) -> T:
        """`work(remaining)` under the deadline, counted as upstream wait, with transport errors mapped."""
        try:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError
            async with asyncio.timeout_at(deadline):
                with Waited(self._waits):
                    return await work(remaining)
        except (TimeoutError, httpx.TimeoutException):
            raise UpstreamTimeout(f"{self.name} did not answer within {limit:g} s.") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"Could not reach {self.name}: {self._scrub(describe_http_error(exc))}.") from None

    async def _next_chunk(self, chunks: AsyncIterator[bytes], limit: float, deadline: float) -> bytes | None:
        """The next bytes of the stream, or None at its end."""
        try:
            async with asyncio.timeout_at(deadline):
                with Waited(self._waits):
                    return await anext(chunks)
        except StopAsyncIteration:
            return None
        except (TimeoutError, httpx.TimeoutException):
            raise UpstreamTimeout(f"{self.name} did not finish the stream within {limit:g} s.") from None
        except httpx.HTTPError as exc:
            raise UpstreamStreamError(
                f"{self.name} broke the connection mid-stream ({self._scrub(describe_http_error(exc))})."
            ) from None

    def event_json(self, event: SSEEvent, data: str) -> dict[str, Any]:
        """An SSE event's data as a JSON object; an `error` event or payload is an UpstreamStreamError."""
        try:
            payload = jsonfast.loads(data)
        except ValueError:
            if event.event == "error":
                raise UpstreamStreamError(f"{self.name} stream error: {self._excerpt(data)}") from None
            raise UpstreamStreamError(
                f"{self.name} sent a stream event that is not JSON: {self._excerpt(data)}"
            ) from None
        if not isinstance(payload, dict):
            raise UpstreamStreamError(f"{self.name} sent a stream event that is not a JSON object: "
                                      f"{self._excerpt(data)}")
        if payload.get("error") is not None or event.event == "error":
            message, kind, code, _ = error_fields(payload)
            raise UpstreamStreamError(f"{self.name} stream error: {self._excerpt(message or data)}",
                                      upstream_code=code if code is not None else kind)
        return payload

    def _json_object(self, content_type: str, raw: bytes) -> dict[str, Any]:
        if _is_html(content_type, raw):
            raise UpstreamError(f"{self.name} answered with an HTML page instead of JSON "
                                f"({self._html_title(raw)}); check its base_url.")
        try:
            data = jsonfast.loads(raw)
        except ValueError:
            raise UpstreamError(f"{self.name} answered with malformed JSON: "
                                f"{self._excerpt(raw.decode('utf-8', 'replace'))}") from None
        if not isinstance(data, dict):
            raise UpstreamError(f"{self.name} answered with JSON that is not an object ({type(data).__name__}).")
        if data.get("error") is not None and "choices" not in data and "data" not in data:
            # Some gateways report a failure in a 200 body; passing it on as a completion would hide it.
            message, _, code, _ = error_fields(data)
            raise UpstreamError(f"{self.name} error: {self._excerpt(message)}", upstream_code=code)
        return data

    def _status_error(self, status: int, headers: httpx.Headers, raw: bytes) -> CfaiError:
        """A non-2xx answer as a cfai error, keeping the provider's message (never our request)."""
        content_type = headers.get("content-type", "")
        html = _is_html(content_type, raw)
        if html:
            message, kind, code, param = f"an HTML page ({self._html_title(raw)})", None, None, None
        else:
            parsed = _json_or_none(raw)
            if isinstance(parsed, dict):
                message, kind, code, param = error_fields(parsed)
            else:
                message, kind, code, param = raw.decode("utf-8", "replace"), None, None, None
        shown = f"{self.name} error (HTTP {status}): {self._excerpt(message or httpx.codes.get_reason_phrase(status))}"
        upstream_code = code if code is not None else status
        if status == 529 or kind == OVERLOADED:
            # Anthropic's "overloaded": capacity, not the client's rate (the router fails over and rests it).
            return RateLimited(shown, upstream_code=OVERLOADED, retry_after=_retry_after(headers))
        if status in (402, 429):
            retry_after = _retry_after(headers)
            if status == 402 or "insufficient_quota" in (kind, code):
                return QuotaExceeded(shown, upstream_code=upstream_code, retry_after=retry_after)
            return RateLimited(shown, upstream_code=upstream_code, retry_after=retry_after)
        if status in (408, 504):
            return UpstreamTimeout(shown, upstream_code=upstream_code)
        if status == 413:
            return RequestTooLarge(shown, upstream_code=upstream_code)
        if html or 300 <= status < 400:
            # A proxy's or web server's page (or a redirect) says the URL is wrong, not that the request is.
            hint = f" (redirect to {headers.get('location', '?')})" if 300 <= status < 400 else ""
            return UpstreamError(f"{shown}{hint}; check its base_url.", upstream_code=upstream_code)
        if status in (400, 422):
            return InvalidRequest(shown, param=param, code=code if isinstance(code, str) else None,
                                  upstream_code=upstream_code)
        if status in (401, 403):
            return UpstreamAuthError(f"{shown} Check the API key configured for {self.name}.",
                                     upstream_code=upstream_code)
        if status == 404:
            return ModelNotFound(shown, param="model", upstream_code=upstream_code)
        return UpstreamError(shown, upstream_code=upstream_code)

    def _not_a_stream(self, content_type: str, raw: bytes) -> UpstreamError:
        shown = content_type.split(";")[0].strip() or "no content type"
        detail = ""
        if not _is_html(content_type, raw):
            parsed = _json_or_none(raw)
            if isinstance(parsed, dict) and parsed.get("error") is not None:
                detail = f": {self._excerpt(error_fields(parsed)[0])}"
        return UpstreamError(f"{self.name} answered a stream request with {shown} instead of "
                             f"text/event-stream{detail}")

    def _excerpt(self, text: str) -> str:
        text = self._scrub(_SPACES.sub(" ", text).strip())
        return text if len(text) <= _EXCERPT else text[: _EXCERPT - 1] + "…"

    def _html_title(self, raw: bytes) -> str:
        found = _TITLE.search(raw[:_ERROR_BODY_LIMIT].decode("utf-8", "replace"))
        return f"'{self._excerpt(found.group(1))[:80]}'" if found and found.group(1).strip() else "no title"

    def _scrub(self, text: str) -> str:
        """The provider's own words may echo the key (some 401 bodies do); never pass it on."""
        return text.replace(self._secret, "***") if self._secret else text


async def _read_capped(response: httpx.Response) -> bytes:
    """At most _ERROR_BODY_LIMIT bytes of an (error) body: enough for a message, never a huge page."""
    buffer = bytearray()
    chunks = response.aiter_bytes()
    try:
        async for chunk in chunks:
            buffer += chunk
            if len(buffer) >= _ERROR_BODY_LIMIT:
                break
    finally:
        if isinstance(chunks, AsyncGenerator):
            await chunks.aclose()
    return bytes(buffer[:_ERROR_BODY_LIMIT])


def _json_or_none(raw: bytes) -> Any:
    try:
        return jsonfast.loads(raw)
    except ValueError:  # not JSON, not UTF-8, or nested too deeply
        return None


def _is_html(content_type: str, raw: bytes) -> bool:
    return "html" in content_type.lower() or raw.lstrip()[:1] == b"<"


def error_fields(body: Mapping[str, Any]) -> tuple[str, str | None, int | str | None, str | None]:
    """(message, type, code, param) of an error body: OpenAI's `{"error": {...}}`, Anthropic's `{"type": "error",
    "error": {"type", "message"}}`, Ollama's `{"error": "..."}`, older vLLM's top-level fields, or FastAPI's
    `{"detail": ...}`."""
    error = body.get("error")
    fields: Mapping[str, Any] = error if isinstance(error, Mapping) else body
    message: Any = error if isinstance(error, str) else fields.get("message")
    if message is None:
        message = fields.get("detail", body.get("detail"))
    if message is None:
        message = json.dumps(error if error is not None else body, ensure_ascii=False)
    elif not isinstance(message, str):
        message = json.dumps(message, ensure_ascii=False)
    kind = fields.get("type")
    code = fields.get("code")
    param = fields.get("param")
    return (message, kind if isinstance(kind, str) else None,
            code if isinstance(code, int | str) and not isinstance(code, bool) else None,
            param if isinstance(param, str) else None)


def _retry_after(headers: httpx.Headers) -> float | None:
    """Retry-After in seconds, or OpenAI's retry-after-ms."""
    seconds = parse_retry_after(headers)
    if seconds is None and (ms := headers.get("retry-after-ms")) is not None:
        try:
            seconds = max(0.0, float(ms) / 1000)
        except ValueError:
            return None
    return seconds
