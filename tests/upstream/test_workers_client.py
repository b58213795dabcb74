"""The upstream client: one total deadline (retries included), which failures are retried, streams.

Timing figures here are bounds that prove "no hang", not performance claims.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from cfai_cli.errors import ConfigError, QuotaExceeded, RateLimited, UpstreamError, UpstreamTimeout
from cfai_cli.upstream.workers import WorkersAIClient
from tests.fake_workers import envelope, error_envelope

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def client(handler, *, timeout: float = 5, retries: int = 3) -> WorkersAIClient:  # type: ignore[no-untyped-def]
    return WorkersAIClient(account_id="acct", api_token="secret-token", api_base="https://cf.test/client/v4",
                           timeout=timeout, max_retries=retries, transport=httpx.MockTransport(handler))


async def test_url_and_auth_header() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=envelope({"response": "ok"}))

    workers = client(handler)
    assert await workers.run("@cf/meta/llama-3.3-70b-instruct-fp8-fast", {"prompt": "x"}) == {"response": "ok"}
    await workers.aclose()
    assert str(seen[0].url) == "https://cf.test/client/v4/accounts/acct/ai/run/@cf/meta/llama-3.3-70b-instruct-fp8-fast"
    assert seen[0].headers["authorization"] == "Bearer secret-token"


def test_account_id_is_validated() -> None:
    with pytest.raises(ConfigError):
        WorkersAIClient(account_id="../x", api_token="t", api_base="https://cf.test", timeout=1)


async def test_a_hang_ends_at_the_deadline_retries_included() -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")

    workers = client(hang, timeout=0.5)
    start = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        await workers.run("@cf/a/b", {})
    assert time.monotonic() - start < 2.0
    await workers.aclose()


async def test_transient_failures_are_retried_then_succeed() -> None:
    answers = [httpx.Response(503, text="unavailable"),
               httpx.Response(429, json=error_envelope(3040, "Capacity temporarily exceeded")),
               httpx.Response(200, json=envelope({"response": "ok"}))]

    workers = client(lambda request: answers.pop(0))
    assert await workers.run("@cf/a/b", {}) == {"response": "ok"}
    assert answers == []
    await workers.aclose()


@pytest.mark.parametrize(("response", "error"), [
    (httpx.Response(429, json=error_envelope(4006, "daily free allocation")), QuotaExceeded),
    (httpx.Response(429, json=error_envelope(3036, "Account limited")), QuotaExceeded),
    (httpx.Response(429, json=error_envelope(9999, "rate limited")), RateLimited),
])
async def test_final_failures_are_not_retried(response: httpx.Response, error: type[Exception]) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return response

    workers = client(handler)
    with pytest.raises(error):
        await workers.run("@cf/a/b", {})
    assert calls == [1]
    await workers.aclose()


async def test_retry_after_beyond_the_deadline_gives_up_at_once() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "60"},
                              json=error_envelope(3040, "Capacity temporarily exceeded"))

    workers = client(handler, timeout=2)
    start = time.monotonic()
    with pytest.raises(RateLimited) as info:
        await workers.run("@cf/a/b", {})
    assert time.monotonic() - start < 1.0
    assert info.value.retry_after == 60
    await workers.aclose()


async def test_errors_never_carry_the_token() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    workers = client(handler, retries=1)
    with pytest.raises(UpstreamError) as info:
        await workers.run("@cf/a/b", {})
    assert "secret-token" not in str(info.value) and "Connection refused" in str(info.value)
    await workers.aclose()


async def test_a_stalled_stream_times_out() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b'data: {"response":"a"}\n\n'
        await asyncio.sleep(30)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    workers = client(handler, timeout=0.5)
    stream = await workers.stream("@cf/a/b", {"stream": True})
    assert stream.chunks is not None
    received: list[bytes] = []
    start = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        async for chunk in stream.chunks:
            received.append(chunk)
    assert received == [b'data: {"response":"a"}\n\n'] and time.monotonic() - start < 2.0
    await workers.aclose()


async def test_stream_request_answered_with_json_is_returned_as_result() -> None:
    workers = client(lambda request: httpx.Response(200, json=envelope({})))
    stream = await workers.stream("@cf/openai/gpt-oss-120b", {"stream": True})
    assert stream.chunks is None and stream.result == {}
    await workers.aclose()


async def test_model_search_reads_every_page() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        count = 100 if page == 1 else 7
        items = [{"name": f"@cf/x/m{page}-{i}"} for i in range(count)]
        return httpx.Response(200, json=envelope(items))

    workers = client(handler)
    assert len(await workers.models_search({"task": "Text Generation"})) == 107
    await workers.aclose()


async def test_run_raw_binary_json_and_multipart() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/png"):
            return httpx.Response(200, headers={"content-type": "image/png"}, content=b"\x89PNG....")
        if request.url.path.endswith("/bad"):
            return httpx.Response(400, json=error_envelope(5006, "AiError: Bad input"))
        return httpx.Response(200, json=envelope({"image": "aGk="}))

    workers = client(handler)
    png = await workers.run_raw("@cf/x/png", json_body={"prompt": "p"})
    assert png.body == b"\x89PNG...." and png.content_type == "image/png" and png.result is None
    multipart = await workers.run_raw("@cf/x/json", form={"prompt": "a sunset", "steps": "4"})
    # A canonical image is a view of the answer (core.workers.image_cut), as result.image too.
    assert multipart.image is not None and bytes(multipart.image) == b"aGk="
    assert multipart.result == {"image": multipart.image}
    assert seen[1].headers["content-type"].startswith("multipart/form-data; boundary=")
    assert b'name="prompt"' in seen[1].content and b"a sunset" in seen[1].content
    raw = await workers.run_raw("@cf/x/json", content=b"RIFF....", content_type="audio/wav",
                                params={"detect_language": "true"})
    assert seen[2].headers["content-type"] == "audio/wav" and seen[2].content == b"RIFF...."
    assert seen[2].url.params["detect_language"] == "true" and raw.result == {"image": raw.image}
    assert raw.image is not None and bytes(raw.image) == b"aGk="
    with pytest.raises(Exception, match="5006"):
        await workers.run_raw("@cf/x/bad", json_body={})
    await workers.aclose()


async def test_an_attempt_told_not_to_retry_fails_at_once_and_counts_its_wait() -> None:
    """The router's `for_attempt(retry=False)` (another target waits) gives up on the first 5xx; the client
    itself still retries, and the copies share its connections and its retry count."""
    from cfai_cli.service.record import RequestRecord

    calls = 0

    async def flaky(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        return httpx.Response(500, json=error_envelope(3043, "Internal error")) if calls < 3 else httpx.Response(
            200, json=envelope({"response": "ok"}))

    workers = client(flaky)
    record = RequestRecord()
    try:
        with pytest.raises(UpstreamError):
            await workers.for_attempt(retry=False, waits=record).run("@cf/a/b", {})
        assert calls == 1 and workers.retries == 0 and record.upstream_wait >= 0.02
        assert await workers.for_attempt(retry=True, waits=record).run("@cf/a/b", {}) == {"response": "ok"}
        assert calls == 3 and workers.retries == 1 and record.upstream_wait >= 0.06
    finally:
        await workers.aclose()
