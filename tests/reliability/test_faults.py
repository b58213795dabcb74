"""Every upstream fault × every endpoint family: the mapping of the error table, within the deadline, and the
next request on the same app answered correctly.

The upstream deadline is 0.5 s (conftest); "within the deadline" allows two more seconds for retries' jitter and
the test machine. Faults are raised by httpx.MockTransport handlers: exceptions for broken connections,
async bodies that stall or break off for broken streams.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest

from cfai_cli.emulator.images import png
from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings
from tests.audio_fixtures import mp3_frames, tone_wav
from tests.fake_workers import FakeWorkers, envelope, error_envelope, native_text, sse
from tests.openai_schema import validate
from tests.reliability.conftest import TIMEOUT

pytestmark = pytest.mark.anyio

LLAMA = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
BGE = "@cf/baai/bge-base-en-v1.5"
FLUX = "@cf/black-forest-labs/flux-1-schnell"
WHISPER = "@cf/openai/whisper-large-v3-turbo"
AURA = "@cf/deepgram/aura-1"  # tts-1
SLACK = 2.0  # seconds allowed past the deadline
MP3 = mp3_frames(4)
PNG = png(8, 8, b"key")


# ---- the families: a request, the upstream model and a good upstream answer for it ------------------------


@dataclass(frozen=True)
class Family:
    name: str
    model: str
    stream: bool
    send: Callable[[httpx.AsyncClient], Any]
    good: Callable[[httpx.Request, dict[str, Any]], httpx.Response]
    check: Callable[[httpx.Response], None]


def _chat_ok(r: httpx.Response) -> None:
    validate(r.json(), "CreateChatCompletionResponse")
    assert r.json()["choices"][0]["message"]["content"] == "all good"


def _data_events(text: str) -> list[str]:
    return [line[6:] for line in text.split("\n") if line.startswith("data: ")]


def _chat_stream_ok(r: httpx.Response) -> None:
    events = _data_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "all good"


def _completion_stream_ok(r: httpx.Response) -> None:
    events = _data_events(r.text)
    assert events[-1] == "[DONE]"
    assert "".join(c["text"] for e in events[:-1] for c in json.loads(e)["choices"]) == "all good"


def _responses_ok(r: httpx.Response) -> None:
    assert r.json()["status"] == "completed" and r.json()["output_text"] == "all good"


def _responses_stream_ok(r: httpx.Response) -> None:
    types = [json.loads(e)["type"] for e in _data_events(r.text)]
    assert types[-1] == "response.completed"


def _embedding(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json=envelope({"shape": [1, 3], "data": [[0.5, 0.25, 0.125]], "pooling": "mean"}))


def _image(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json=envelope({"image": base64.b64encode(PNG).decode()}))


def _transcript(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json=envelope({"text": "all good", "word_count": 2,
                                              "transcription_info": {"language": "en", "duration": 1.0},
                                              "segments": [{"start": 0.0, "end": 1.0, "text": " all good"}]}))


def _speech(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "audio/mpeg"}, content=MP3)


def _chat(stream: bool) -> Callable[[httpx.AsyncClient], Any]:
    return lambda c: c.post("/v1/chat/completions", json={"model": LLAMA, "stream": stream,
                                                          "messages": [{"role": "user", "content": "hi"}]})


FAMILIES = [
    Family("chat", LLAMA, False, _chat(False), native_text("all good"), _chat_ok),
    Family("chat-stream", LLAMA, True, _chat(True), native_text("all good"), _chat_stream_ok),
    Family("responses", LLAMA, False, lambda c: c.post("/v1/responses", json={"model": LLAMA, "input": "hi"}),
           native_text("all good"), _responses_ok),
    Family("responses-stream", LLAMA, True,
           lambda c: c.post("/v1/responses", json={"model": LLAMA, "input": "hi", "stream": True}),
           native_text("all good"), _responses_stream_ok),
    Family("completions", LLAMA, False, lambda c: c.post("/v1/completions", json={"model": LLAMA, "prompt": "hi"}),
           native_text("all good"), lambda r: validate(r.json(), "CreateCompletionResponse")),
    Family("completions-stream", LLAMA, True,
           lambda c: c.post("/v1/completions", json={"model": LLAMA, "prompt": "hi", "stream": True}),
           native_text("all good"), _completion_stream_ok),
    Family("embeddings", BGE, False, lambda c: c.post("/v1/embeddings", json={"model": BGE, "input": "hi"}),
           _embedding, lambda r: validate(r.json(), "CreateEmbeddingResponse")),
    Family("images", FLUX, False,
           lambda c: c.post("/v1/images/generations", json={"model": FLUX, "prompt": "p"}),
           _image, lambda r: validate(r.json(), "ImagesResponse")),
    Family("transcriptions", WHISPER, False,
           lambda c: c.post("/v1/audio/transcriptions", data={"model": "whisper-1"},
                            files={"file": ("a.wav", tone_wav(1.0), "audio/wav")}),
           _transcript, lambda r: r.json()["text"] == "all good" or pytest.fail(r.text)),
    Family("speech", AURA, False,
           lambda c: c.post("/v1/audio/speech", json={"model": "tts-1", "input": "Hi", "voice": "alloy"}),
           _speech, lambda r: r.content == MP3 or pytest.fail("audio changed")),
]
STREAMING = [f for f in FAMILIES if f.stream]


# ---- the faults ----------------------------------------------------------------------------------------------


def _raise(exc: type[httpx.TransportError], text: str) -> Callable[..., httpx.Response]:
    def handle(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        raise exc(text, request=request)
    return handle


async def _hang(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
    await asyncio.sleep(30)
    raise AssertionError("the proxy waited past its deadline")


def _fixed(status: int, content: bytes | dict[str, Any], content_type: str = "application/json",
           **headers: str) -> Callable[..., httpx.Response]:
    raw = json.dumps(content).encode() if isinstance(content, dict) else content
    return lambda request, body: httpx.Response(status, headers={"content-type": content_type, **headers},
                                                content=raw)


async def _cut_body() -> AsyncIterator[bytes]:
    yield b'{"result": {"response": "this answer is cu'
    raise httpx.ReadError("Connection reset by peer")


HTML = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>"

# kind -> (handler, status, OpenAI code or None, Retry-After expected)
FAULTS: dict[str, tuple[Callable[..., Any], int, str | None, bool]] = {
    "connection reset": (_raise(httpx.ReadError, "Connection reset by peer"), 502, "upstream_error", False),
    "connection closed": (_raise(httpx.RemoteProtocolError, "Server disconnected without sending a response."),
                          502, "upstream_error", False),
    "connection refused": (_raise(httpx.ConnectError, "Connection refused"), 502, "upstream_error", False),
    "hang": (_hang, 504, "timeout", False),
    "429 Retry-After": (_fixed(429, error_envelope(3040, "AiError: Capacity temporarily exceeded"), **{
        "Retry-After": "7"}), 429, "rate_limit_exceeded", True),
    "capacity 3040": (_fixed(429, error_envelope(3040, "AiError: Capacity temporarily exceeded")), 429,
                      "rate_limit_exceeded", False),
    "500": (_fixed(500, error_envelope(3043, "AiError: Internal server error")), 502, "upstream_error", False),
    "502 HTML": (_fixed(502, HTML, "text/html"), 502, "upstream_error", False),
    "200 malformed JSON": (_fixed(200, b'{"result": {"response": "x"', "application/json"), 502, "upstream_error",
                           False),
    "200 success:false": (_fixed(200, error_envelope(3043, "AiError: Internal server error")), 502,
                          "upstream_error", False),
    "body cut short": (lambda request, body: httpx.Response(200, headers={"content-type": "application/json"},
                                                            content=_cut_body()), 502, "upstream_error", False),
}


def assert_error(response: httpx.Response, status: int, code: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    validate(body, "ErrorResponse")
    if code is not None:
        assert body["error"]["code"] == code, body
    for leak in ("Traceback", "<html", "<!DOCTYPE", "cf-secret-token-value"):
        assert leak not in response.text
    return body["error"]


async def _timed(call: Any) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = await call
    return response, time.perf_counter() - started


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
@pytest.mark.parametrize("kind", list(FAULTS))
async def test_fault_maps_to_an_openai_error_then_the_next_request_succeeds(
        proxy, fake: FakeWorkers, family: Family, kind: str) -> None:
    handler, status, code, retry_after = FAULTS[kind]
    fake.models[family.model] = handler
    async with proxy() as client:
        response, elapsed = await _timed(family.send(client))
        assert_error(response, status, code)
        assert elapsed < TIMEOUT + SLACK, f"{kind} took {elapsed:.1f} s"
        if retry_after:
            assert response.headers["retry-after"] == "7"
        if status == 429:
            assert "retry-after" in response.headers
        fake.models[family.model] = family.good
        following = await family.send(client)
        assert following.status_code == 200, following.text[:300]
        family.check(following)


# ---- faults after a stream has started -------------------------------------------------------------------------


def _stream_of(*parts: bytes, then: BaseException | None = None, stall: bool = False) -> Callable[..., Any]:
    async def body() -> AsyncIterator[bytes]:
        for part in parts:
            yield part
            await asyncio.sleep(0)
        if stall:
            await asyncio.sleep(30)
        if then is not None:
            raise then

    def handle(request: httpx.Request, parsed: dict[str, Any]) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())
    return handle


PARTIAL = sse({"response": "partial"}, {"response": " answer"}, done=False)
MID_STREAM = {
    "no [DONE]": _stream_of(PARTIAL),
    "error event": _stream_of(PARTIAL + sse({"result": {}, "success": False, "messages": [], "errors": [
        {"code": 3046, "message": "AiError: AiError: Request timeout"}]}, done=False)),
    "error object": _stream_of(PARTIAL + sse({"error": {"code": 3043, "message": "AiError: Internal"}}, done=False)),
    "garbage event": _stream_of(PARTIAL + b'data: {"response": "no closing brace\n\ndata: [DONE]\n\n'),
    "reset mid-stream": _stream_of(PARTIAL, then=httpx.ReadError("Connection reset by peer")),
    "closed mid-stream": _stream_of(PARTIAL, then=httpx.RemoteProtocolError("peer closed connection")),
    "stall": _stream_of(PARTIAL, stall=True),
}


def assert_in_band_failure(family: Family, response: httpx.Response) -> None:
    assert response.status_code == 200
    events = _data_events(response.text)
    assert "[DONE]" not in events, "a broken stream must never look complete"
    assert "Traceback" not in response.text
    if family.name == "responses-stream":
        parsed = [json.loads(e) for e in events]
        types = [e["type"] for e in parsed]
        assert "response.completed" not in types
        assert types[-2:] == ["error", "response.failed"], types
        assert parsed[-1]["response"]["status"] == "failed"
    else:
        validate(json.loads(events[-1]), "ErrorResponse")
        text = "".join(
            (c.get("text") or "") if "text" in c else (c["delta"].get("content") or "")
            for e in events[:-1] for c in json.loads(e)["choices"])
        assert text == "partial answer"


@pytest.mark.parametrize("family", STREAMING, ids=lambda f: f.name)
@pytest.mark.parametrize("kind", list(MID_STREAM))
async def test_broken_streams_end_in_band_within_the_deadline(proxy, fake: FakeWorkers, family: Family,
                                                              kind: str) -> None:
    fake.models[family.model] = MID_STREAM[kind]
    async with proxy() as client:
        response, elapsed = await _timed(family.send(client))
        assert_in_band_failure(family, response)
        assert elapsed < TIMEOUT + SLACK
        fake.models[family.model] = family.good
        following = await family.send(client)
        family.check(following)


# ---- a 20 MB answer ---------------------------------------------------------------------------------------------

BIG = 20 * 1024 * 1024


@asynccontextmanager
async def patient_proxy(settings: Settings, api_key: str, fake: FakeWorkers) -> AsyncIterator[httpx.AsyncClient]:
    """The proxy with a 60 s deadline: moving 20 MB is work, not a fault."""
    app = create_app(replace(settings, timeout=60.0), transport=fake.transport())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test",
            headers={"Authorization": f"Bearer {api_key}"}) as client:
        yield client


async def test_a_20_mb_answer_arrives_whole(settings: Settings, api_key: str, fake: FakeWorkers) -> None:
    text = ("0123456789abcdé " * (BIG // 16))[:BIG]
    fake.models[LLAMA] = native_text(text)
    async with patient_proxy(settings, api_key, fake) as client:
        response = await client.post("/v1/chat/completions", json={"model": LLAMA, "messages": [
            {"role": "user", "content": "hi"}]})
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == text
        fake.models[FLUX] = lambda request, body: httpx.Response(200, json=envelope(
            {"image": base64.b64encode(PNG + b"\0" * BIG).decode()}))
        image = await client.post("/v1/images/generations", json={"model": FLUX, "prompt": "p"})
        assert image.status_code == 200
        assert len(base64.b64decode(image.json()["data"][0]["b64_json"])) == len(PNG) + BIG


async def test_a_20_mb_stream_arrives_whole(settings: Settings, api_key: str, fake: FakeWorkers) -> None:
    piece = "x" * 1023 + "é"
    count = BIG // 1024
    body = sse(*({"response": piece} for _ in range(count)))
    fake.models[LLAMA] = lambda request, parsed: httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=body)
    async with patient_proxy(settings, api_key, fake) as client, client.stream(
            "POST", "/v1/chat/completions",
            json={"model": LLAMA, "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as response:
        raw = bytearray()
        async for data in response.aiter_bytes():
            raw.extend(data)
    events = _data_events(raw.decode())
    assert events[-1] == "[DONE]"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for e in events[:-1]
                   for c in [json.loads(e)] if c["choices"])
    assert text == piece * count


# ---- retries stay inside the one deadline ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["connection refused", "capacity 3040", "500", "502 HTML", "body cut short"])
async def test_transient_faults_are_retried_within_the_deadline(settings: Settings, api_key: str, fake: FakeWorkers,
                                                                kind: str) -> None:
    seen: list[int] = []
    handler = FAULTS[kind][0]

    def flaky(request: httpx.Request, body: dict[str, Any]) -> Any:
        seen.append(1)
        return handler(request, body) if len(seen) < 3 else native_text("all good")(request, body)

    fake.models[LLAMA] = flaky
    app = create_app(replace(settings, max_retries=3, timeout=5.0), transport=fake.transport())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test",
            headers={"Authorization": f"Bearer {api_key}"}) as client:
        response, elapsed = await _timed(_chat(False)(client))
        _chat_ok(response)
        assert len(seen) == 3 and elapsed < 5.0


@pytest.mark.parametrize("kind", ["connection reset", "connection closed"])
@pytest.mark.parametrize("stream", [False, True])
async def test_a_request_that_may_have_arrived_is_never_sent_again(settings: Settings, api_key: str, fake: FakeWorkers,
                                                                   kind: str, stream: bool) -> None:
    """The connection broke after the POST went out and before any answer: Workers AI may have received (and
    billed) it, so it is not resent, whatever max_retries says; the client gets a 502 at once."""
    seen: list[int] = []
    handler = FAULTS[kind][0]

    def once(request: httpx.Request, body: dict[str, Any]) -> Any:
        seen.append(1)
        return handler(request, body)

    fake.models[LLAMA] = once
    app = create_app(replace(settings, max_retries=3, timeout=5.0), transport=fake.transport())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test",
            headers={"Authorization": f"Bearer {api_key}"}) as client:
        response = await _chat(stream)(client)
    assert_error(response, 502, "upstream_error")
    assert len(seen) == 1


async def test_a_hang_with_retries_on_still_ends_at_the_deadline(settings: Settings, api_key: str,
                                                                 fake: FakeWorkers) -> None:
    fake.models[LLAMA] = _hang
    app = create_app(replace(settings, max_retries=3, timeout=1.0), transport=fake.transport())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test",
            headers={"Authorization": f"Bearer {api_key}"}) as client:
        response, elapsed = await _timed(_chat(False)(client))
    assert_error(response, 504, "timeout")
    assert 1.0 <= elapsed < 1.0 + SLACK
