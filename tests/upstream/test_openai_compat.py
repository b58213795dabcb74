"""The OpenAI-compatible provider client: URLs and headers, error mapping, SSE streams, deadlines, no leaks.

Every failure is checked through `failure()`, which also asserts the API key is in no message.
Timing figures are bounds that prove "no hang", not performance claims.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import httpx
import pytest

from cfai_cli import __version__
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
from cfai_cli.service.record import RequestRecord
from cfai_cli.upstream.openai_compat import OpenAICompatClient

pytestmark = pytest.mark.anyio

KEY = "gsk_live_secret_key_0123456789"
SSE = {"content-type": "text/event-stream"}
Handler = Callable[[httpx.Request], httpx.Response] | Callable[[httpx.Request], Coroutine[Any, Any, httpx.Response]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def client(handler: Handler, *, timeout: float = 5, key: str | None = KEY) -> OpenAICompatClient:
    return OpenAICompatClient(name="groq", base_url="https://api.groq.test/openai/v1/", api_key=key,
                              timeout=timeout, transport=httpx.MockTransport(handler))


async def failure(kind: type[CfaiError], call: Awaitable[Any]) -> CfaiError:
    """The error `call` raises: of `kind`, and never holding the key (nor anything of the request's headers)."""
    with pytest.raises(kind) as info:
        await call
    error = info.value
    for text in (str(error), error.message, repr(error), json.dumps(error.to_openai())):
        assert KEY not in text and "Bearer" not in text
    assert error.__cause__ is None or KEY not in str(error.__cause__)
    return error


async def hang(request: httpx.Request) -> httpx.Response:
    """An upstream that never answers."""
    await asyncio.sleep(30)
    raise AssertionError("unreachable")


async def collect(events: AsyncIterator[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """A stream's events, out of the batches (one per network read) it gives them in."""
    return [event async for batch in events for event in batch]


def sse(*payloads: Any, done: bool = True) -> bytes:
    body = b"".join(b"data: " + json.dumps(p, ensure_ascii=False).encode() + b"\n\n" for p in payloads)
    return body + (b"data: [DONE]\n\n" if done else b"")


class RecordingStream(httpx.AsyncByteStream):
    """A response body from a list of chunks (an optional stall or failure after them) that records aclose()."""

    def __init__(self, chunks: list[bytes], *, stall: float = 0, fail: bool = False) -> None:
        self.chunks = chunks
        self.stall = stall
        self.fail = fail
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.stall:
            await asyncio.sleep(self.stall)
        if self.fail:
            raise httpx.ReadError("connection reset by peer")

    async def aclose(self) -> None:
        self.closed = True


# ---- JSON calls ------------------------------------------------------------------------------------


async def test_post_json_url_headers_and_body() -> None:
    seen: list[httpx.Request] = []
    answer = {"id": "chatcmpl-1", "object": "chat.completion", "choices": [{"index": 0, "message": {
        "role": "assistant", "content": "héllo"}, "finish_reason": "stop"}]}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=answer)

    groq = client(handler)
    body = {"model": "llama-3.3-70b-versatile", "messages": [{"role": "user", "content": "hi"}]}
    assert await groq.post_json("/chat/completions", body) == answer
    await groq.aclose()
    request = seen[0]
    assert str(request.url) == "https://api.groq.test/openai/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["user-agent"] == f"cfai/{__version__}"
    assert json.loads(request.content) == body


async def test_no_key_no_authorization_header() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"object": "list", "data": []})

    local = client(handler, key=None)
    assert await local.post_json("embeddings", {"model": "m", "input": "x"}) == {"object": "list", "data": []}
    await local.aclose()
    assert "authorization" not in seen[0].headers
    assert str(seen[0].url) == "https://api.groq.test/openai/v1/embeddings"


def test_base_url_is_validated() -> None:
    with pytest.raises(ConfigError, match="groq"):
        OpenAICompatClient(name="groq", base_url="api.groq.com/openai/v1", api_key=KEY, timeout=1)


async def test_wait_is_counted_as_upstream_time() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.05)
        return httpx.Response(200, json={"ok": True})

    record = RequestRecord()
    groq = client(slow)
    try:
        await groq.for_attempt(retry=False, waits=record).post_json("/chat/completions", {})
        waited = record.upstream_wait
        await groq.post_json("/chat/completions", {})  # the process's client: no request's record to count in
    finally:
        await groq.aclose()
    assert 0.04 <= waited == record.upstream_wait


# ---- error mapping (JSON and stream calls alike) ---------------------------------------------------


def openai_error(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


ERROR_ROWS: list[tuple[int, dict[str, str], Any, type[CfaiError]]] = [
    (400, {}, openai_error("This model's maximum context length is 8192 tokens.", "invalid_request_error",
                           "context_length_exceeded", "messages"), InvalidRequest),
    (422, {}, {"detail": [{"loc": ["body", "messages"], "msg": "field required"}]}, InvalidRequest),
    (401, {}, openai_error(f"Invalid API Key: {KEY}", "invalid_request_error", "invalid_api_key"), UpstreamAuthError),
    (403, {}, {"error": {"message": "Forbidden"}}, UpstreamAuthError),
    (404, {}, openai_error("The model `nope` does not exist", "invalid_request_error", "model_not_found"),
     ModelNotFound),
    (408, {}, {"error": "request timed out"}, UpstreamTimeout),
    (413, {}, openai_error("Request Entity Too Large", "invalid_request_error"), RequestTooLarge),
    (429, {"Retry-After": "7"}, openai_error("Rate limit reached for model llama in TPM", "tokens",
                                             "rate_limit_exceeded"), RateLimited),
    (429, {}, openai_error("You exceeded your current quota", "insufficient_quota", "insufficient_quota"),
     QuotaExceeded),
    (500, {}, openai_error("The server had an error", "server_error"), UpstreamError),
    (503, {}, b"upstream connect error or disconnect/reset before headers", UpstreamError),
    (504, {}, openai_error("Gateway timeout", "server_error"), UpstreamTimeout),
    (502, {"content-type": "text/html"}, b"<html><head><title>502 Bad Gateway</title></head></html>", UpstreamError),
    (404, {"content-type": "text/html"}, b"<!DOCTYPE html><html><title>Not Found</title></html>", UpstreamError),
    (301, {"location": "https://api.groq.test/v1/chat/completions"}, b"", UpstreamError),
]


def error_handler(status: int, headers: dict[str, str], body: Any) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, bytes):
            return httpx.Response(status, headers=headers, content=body)
        return httpx.Response(status, headers=headers, json=body)

    return handler


@pytest.mark.parametrize("streaming", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(("status", "headers", "body", "kind"), ERROR_ROWS,
                         ids=[f"{row[0]}-{row[3].__name__}-{i}" for i, row in enumerate(ERROR_ROWS)])
async def test_error_mapping(status: int, headers: dict[str, str], body: Any, kind: type[CfaiError],
                             streaming: bool) -> None:
    groq = client(error_handler(status, headers, body))
    call = (groq.stream("/chat/completions", {"stream": True}) if streaming
            else groq.post_json("/chat/completions", {}))
    error = await failure(kind, call)
    await groq.aclose()
    assert type(error) is kind  # not merely a subclass: 404 HTML is no ModelNotFound, 429 quota no plain 429
    assert error.message.startswith(f"groq error (HTTP {status}): ")


async def test_error_details_are_kept() -> None:
    rows = {row[0] if row[0] != 429 else (429, row[3]): row for row in ERROR_ROWS if not row[1].get("content-type")}

    async def mapped(row: tuple[int, dict[str, str], Any, type[CfaiError]]) -> CfaiError:
        groq = client(error_handler(*row[:3]))
        try:
            return await failure(row[3], groq.post_json("/chat/completions", {}))
        finally:
            await groq.aclose()

    bad = await mapped(rows[400])
    assert bad.message == ("groq error (HTTP 400): This model's maximum context length is 8192 tokens.")
    assert bad.code == "context_length_exceeded" and bad.param == "messages" and bad.status == 400
    assert "field required" in (await mapped(rows[422])).message
    auth = await mapped(rows[401])
    assert "Invalid API Key: ***" in auth.message and auth.status == 502  # our key, not the client's fault
    missing = await mapped(rows[404])
    assert missing.param == "model" and "does not exist" in missing.message
    limited = await mapped(rows[(429, RateLimited)])
    assert limited.retry_after == 7 and limited.message == (
        "groq error (HTTP 429): Rate limit reached for model llama in TPM")
    quota = await mapped(rows[(429, QuotaExceeded)])
    assert quota.code == "insufficient_quota" and quota.upstream_code == "insufficient_quota"
    assert "upstream connect error" in (await mapped(rows[503])).message


async def test_html_page_message_names_its_title() -> None:
    groq = client(error_handler(502, {"content-type": "text/html"},
                                b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"))
    error = await failure(UpstreamError, groq.post_json("/chat/completions", {}))
    await groq.aclose()
    assert "502 Bad Gateway" in error.message and "<html" not in error.message


async def test_connection_error_never_shows_the_request() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        # An exception text that echoes the key (as a careless transport or proxy might) is scrubbed too.
        key = request.headers["authorization"].removeprefix("Bearer ")
        raise httpx.ConnectError(f"[Errno 111] Connection refused (key {key})", request=request)

    groq = client(handler)
    for call in (lambda: groq.post_json("/chat/completions", {}),
                 lambda: groq.stream("/chat/completions", {"stream": True})):
        error = await failure(UpstreamError, call())
        assert type(error) is UpstreamError
        assert error.message.startswith("Could not reach groq: ConnectError: [Errno 111] Connection refused")
    await groq.aclose()


@pytest.mark.parametrize(("content_type", "body", "needle"), [
    ("application/json", b'{"choices": [', "malformed JSON"),
    ("application/json", b"[1, 2]", "not an object"),
    ("text/html", b"<html><title>Login</title></html>", "HTML page"),
    ("application/json", b'{"error": {"message": "Provider returned error", "code": 502}}', "Provider returned"),
], ids=["malformed", "list", "html", "error-in-200"])
async def test_bad_success_bodies(content_type: str, body: bytes, needle: str) -> None:
    groq = client(lambda request: httpx.Response(200, headers={"content-type": content_type}, content=body))
    error = await failure(UpstreamError, groq.post_json("/chat/completions", {}))
    await groq.aclose()
    assert type(error) is UpstreamError and needle in error.message and error.message.startswith("groq")


async def test_post_json_deadline_and_per_call_timeout() -> None:
    groq = client(hang, timeout=30)
    start = time.monotonic()
    error = await failure(UpstreamTimeout, groq.post_json("/chat/completions", {}, timeout=0.3))
    assert time.monotonic() - start < 1.5
    assert error.message == "groq did not answer within 0.3 s."
    await groq.aclose()


async def test_a_stalled_json_body_times_out() -> None:
    stream = RecordingStream([b'{"id": '], stall=30)
    groq = client(lambda request: httpx.Response(200, headers={"content-type": "application/json"}, stream=stream),
                  timeout=0.3)
    start = time.monotonic()
    await failure(UpstreamTimeout, groq.post_json("/chat/completions", {}))
    assert time.monotonic() - start < 1.5 and stream.closed
    await groq.aclose()


# ---- streams -----------------------------------------------------------------------------------------


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "llama",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


STREAM_EVENTS = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Grüße aus Zürich 🌍 "}),
    chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                           "function": {"name": "get_weather", "arguments": ""}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Zü'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'rich"}'}}]}),
    chunk({}, "tool_calls"),
    {"id": "chatcmpl-9", "object": "chat.completion.chunk", "choices": [], "usage": {
        "prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}},
]


async def test_stream_events_come_through_unchanged_across_any_byte_split() -> None:
    wire = b": OPENROUTER PROCESSING\n\n" + sse(*STREAM_EVENTS[:3]).replace(b"\n\n", b"\r\n\r\n", 1)
    wire = wire.removesuffix(b"data: [DONE]\n\n") + b"data:\n\n" + sse(*STREAM_EVENTS[3:])
    seen: list[httpx.Request] = []
    for size in (1, 2, 3, 7, len(wire)):
        pieces = [wire[i:i + size] for i in range(0, len(wire), size)]  # size 1 and 2 split every UTF-8 sequence
        stream = RecordingStream(pieces)

        def handler(request: httpx.Request, stream: RecordingStream = stream) -> httpx.Response:
            seen.append(request)
            return httpx.Response(200, headers={"content-type": "text/event-stream; charset=utf-8"}, stream=stream)

        groq = client(handler)
        events = await groq.stream("/chat/completions", {"model": "llama", "stream": True})
        assert await collect(events) == STREAM_EVENTS, size
        assert stream.closed
        await groq.aclose()
    assert seen[0].headers["accept"] == "text/event-stream"
    assert json.loads(seen[0].content) == {"model": "llama", "stream": True}


async def test_stream_without_done_is_an_error() -> None:
    stream = RecordingStream([sse(STREAM_EVENTS[0], STREAM_EVENTS[1], done=False)])
    groq = client(lambda request: httpx.Response(200, headers=SSE, stream=stream))
    events = await groq.stream("/chat/completions", {"stream": True})
    received: list[dict[str, Any]] = []

    async def consume() -> None:
        async for batch in events:
            received.extend(batch)

    error = await failure(UpstreamStreamError, consume())
    assert received == STREAM_EVENTS[:2] and error.message.startswith("groq ended the stream early")
    assert stream.closed
    await groq.aclose()


@pytest.mark.parametrize(("wire", "needle"), [
    (sse(STREAM_EVENTS[0], {"error": {"message": "Upstream provider overloaded", "code": 502}}),
     "groq stream error: Upstream provider overloaded"),
    (b'data: {"id": "x"}\n\nevent: error\ndata: {"message": "model crashed"}\n\n', "groq stream error: model crashed"),
    (b'data: {"id": "x"}\n\ndata: {"choices": [\n\ndata: [DONE]\n\n', "groq sent a stream event that is not JSON"),
    (b'data: {"id": "x"}\n\ndata: "just a string"\n\ndata: [DONE]\n\n', "not a JSON object"),
    (b'data: {"id": "x"}\n\ndata: ' + f'{{"error": {{"message": "bad key {KEY}"}}}}'.encode() + b"\n\n",
     "groq stream error: bad key ***"),
], ids=["error-object", "error-event", "malformed", "non-object", "key-echo"])
async def test_stream_error_events(wire: bytes, needle: str) -> None:
    stream = RecordingStream([wire])
    groq = client(lambda request: httpx.Response(200, headers=SSE, stream=stream))
    events = await groq.stream("/chat/completions", {"stream": True})
    assert await anext(events) == [{"id": "x"} if b'"x"' in wire else STREAM_EVENTS[0]]  # the first event is fine
    error = await failure(UpstreamStreamError, anext(events))
    assert needle in error.message and stream.closed
    await groq.aclose()


async def test_stream_connection_broken_mid_stream() -> None:
    stream = RecordingStream([sse(STREAM_EVENTS[0], done=False)], fail=True)
    groq = client(lambda request: httpx.Response(200, headers=SSE, stream=stream))
    events = await groq.stream("/chat/completions", {"stream": True})
    assert await anext(events) == [STREAM_EVENTS[0]]
    error = await failure(UpstreamStreamError, anext(events))
    assert error.message.startswith("groq broke the connection mid-stream (ReadError") and stream.closed
    await groq.aclose()


async def test_stream_answered_with_json_is_an_error() -> None:
    stream = RecordingStream([json.dumps({"id": "chatcmpl-1", "choices": []}).encode()])
    groq = client(lambda request: httpx.Response(200, headers={"content-type": "application/json"}, stream=stream))
    error = await failure(UpstreamError, groq.stream("/chat/completions", {"stream": True}))
    assert type(error) is UpstreamError and "application/json instead of text/event-stream" in error.message
    assert stream.closed
    await groq.aclose()


async def test_a_stalled_stream_times_out_within_the_deadline() -> None:
    stream = RecordingStream([sse(STREAM_EVENTS[0], done=False)], stall=30)
    groq = client(lambda request: httpx.Response(200, headers=SSE, stream=stream), timeout=30)
    start = time.monotonic()
    events = await groq.stream("/chat/completions", {"stream": True}, timeout=0.4)
    received: list[dict[str, Any]] = []

    async def consume() -> None:
        async for batch in events:
            received.extend(batch)

    error = await failure(UpstreamTimeout, consume())
    assert time.monotonic() - start < 1.5
    assert received == STREAM_EVENTS[:1] and error.message == "groq did not finish the stream within 0.4 s."
    assert stream.closed
    await groq.aclose()


async def test_a_stream_that_never_starts_times_out() -> None:
    groq = client(hang, timeout=0.3)
    start = time.monotonic()
    await failure(UpstreamTimeout, groq.stream("/chat/completions", {"stream": True}))
    assert time.monotonic() - start < 1.5
    await groq.aclose()


async def test_closing_the_iterator_early_closes_the_response() -> None:
    streams: list[RecordingStream] = []

    def handler(request: httpx.Request) -> httpx.Response:
        streams.append(RecordingStream([sse(*STREAM_EVENTS, done=False)], stall=30))
        return httpx.Response(200, headers=SSE, stream=streams[-1])

    groq = client(handler)
    events = await groq.stream("/chat/completions", {"stream": True})
    assert isinstance(events, AsyncGenerator)  # as promised: the router may call aclose()
    assert await anext(events) == STREAM_EVENTS  # one read, one batch
    assert [s.closed for s in streams] == [False]
    await events.aclose()
    assert [s.closed for s in streams] == [True]

    never_read = await groq.stream("/chat/completions", {"stream": True})
    assert isinstance(never_read, AsyncGenerator)
    await never_read.aclose()
    assert [s.closed for s in streams] == [True, True]

    async def consume_then_get_cancelled() -> None:
        async for _ in await groq.stream("/chat/completions", {"stream": True}):
            pass

    task = asyncio.get_running_loop().create_task(consume_then_get_cancelled())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert streams[2].closed
    await groq.aclose()


async def test_done_ends_the_stream_even_if_the_connection_stays_open() -> None:
    stream = RecordingStream([sse(STREAM_EVENTS[0])], stall=30)
    groq = client(lambda request: httpx.Response(200, headers=SSE, stream=stream))
    start = time.monotonic()
    assert await collect(await groq.stream("/chat/completions", {"stream": True})) == STREAM_EVENTS[:1]
    assert time.monotonic() - start < 1.0 and stream.closed
    await groq.aclose()
