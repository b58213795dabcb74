"""Streams are byte-exact: whatever text the upstream produces reaches the client unchanged, however the
upstream's bytes are split (mid multi-byte character, mid JSON escape, mid line end) and whatever the text
holds: quotes, backslashes, CR/LF runs, the literal `data: [DONE]`, non-BMP characters.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from cfai_cli.server.app import create_app
from cfai_cli.settings import load_settings
from tests.fake_workers import FakeWorkers

LLAMA = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
TRICKY = ["data: [DONE]", "\n\ndata: [DONE]\n\n", "\r\n\r\n", "\r", '"', "\\", '\\"', "\\n", "é", "€", "😀",
          "\u2028", "\ufeff", "event: x\n", ": comment", "\x00", "id: 1"]

pieces = st.lists(st.one_of(st.sampled_from(TRICKY), st.text(max_size=12)), min_size=1, max_size=12)
splits = st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30)
line_end = st.sampled_from(["\n", "\r\n"])


def upstream_bytes(texts: list[str], eol: str) -> bytes:
    events = [{"response": t, "p": "abc"} for t in texts]
    events.append({"response": "", "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
    frame = eol + eol
    return b"".join(f"data: {json.dumps(e, ensure_ascii=False)}{frame}".encode() for e in events) + \
        f"data: [DONE]{frame}".encode()


def chunked(body: bytes, sizes: list[int]) -> list[bytes]:
    out, pos, i = [], 0, 0
    while pos < len(body):
        size = sizes[i % len(sizes)]
        out.append(body[pos:pos + size])
        pos += size
        i += 1
    return out


class Proxy:
    """The proxy over a fake upstream that replays `chunks`: one app, started once on one event loop of its
    own and shared by every example of the module (starting an app per example was most of their time)."""

    def __init__(self) -> None:
        home = tempfile.mkdtemp(prefix="cfai-streams-")
        self.settings = load_settings({"account_id": "0123abcd", "api_token": "cf-token", "timeout": 10},
                                      environ={"CFAI_HOME": home})
        self.fake = FakeWorkers()
        self.chunks: list[bytes] = []
        self.fake.models[LLAMA] = self.handle
        self.loop = asyncio.new_event_loop()
        self.stack = AsyncExitStack()
        app = create_app(self.settings, no_auth=True, transport=self.fake.transport())
        self.client = self.loop.run_until_complete(self._open(app))

    async def _open(self, app: Starlette) -> httpx.AsyncClient:
        await self.stack.enter_async_context(app.router.lifespan_context(app))
        return await self.stack.enter_async_context(httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"))

    def close(self) -> None:
        self.loop.run_until_complete(self.stack.aclose())
        self.loop.close()

    def handle(self, request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        chunks = list(self.chunks)

        async def stream() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk
                await asyncio.sleep(0)

        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=stream())

    def run(self, jobs: list[tuple[str, dict[str, Any], list[bytes]]]) -> list[bytes]:
        return self.loop.run_until_complete(self._run(jobs))

    async def _run(self, jobs: list[tuple[str, dict[str, Any], list[bytes]]]) -> list[bytes]:
        out = []
        for path, body, chunks in jobs:
            self.chunks = chunks
            response = await self.client.post(path, json=body)
            assert response.status_code == 200, response.text
            out.append(response.content)
        return out


PROXY: Proxy | None = None


def proxy() -> Proxy:
    global PROXY
    if PROXY is None:
        PROXY = Proxy()
    return PROXY


@pytest.fixture(scope="module", autouse=True)
def _close_the_shared_proxy() -> Iterator[None]:
    yield
    global PROXY
    if PROXY is not None:
        PROXY.close()
        PROXY = None


def data_lines(raw: bytes) -> list[str]:
    text = raw.decode("utf-8")  # strict: the proxy never emits broken UTF-8
    return [line[6:] for line in text.split("\n") if line.startswith("data: ")]


def chat_text(raw: bytes) -> str:
    events = data_lines(raw)
    assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
    return "".join(c["choices"][0]["delta"].get("content") or ""
                   for c in map(json.loads, events[:-1]) if c["choices"])


def completion_text(raw: bytes) -> str:
    events = data_lines(raw)
    assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
    return "".join(choice["text"] for e in events[:-1] for choice in json.loads(e)["choices"])


def responses_text(raw: bytes) -> str:
    events = [json.loads(e) for e in data_lines(raw)]
    assert events[-1]["type"] == "response.completed"
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    done = [e["text"] for e in events if e["type"] == "response.output_text.done"]
    if not deltas and not done:
        return ""  # an empty answer has no message item
    assert done == [deltas]
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == deltas
    return deltas


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=pieces, sizes=splits, eol=line_end)
def test_any_text_any_split_reaches_the_client_unchanged(texts: list[str], sizes: list[int], eol: str) -> None:
    expected = "".join(texts)
    if "<think>" in expected or "</think>" in expected:  # reasoning markup is split out on purpose
        return
    chunks = chunked(upstream_bytes(texts, eol), sizes)
    messages = [{"role": "user", "content": "hi"}]
    chat, completion, response = proxy().run([
        ("/v1/chat/completions", {"model": LLAMA, "messages": messages, "stream": True}, chunks),
        ("/v1/completions", {"model": LLAMA, "prompt": "hi", "stream": True}, chunks),
        ("/v1/responses", {"model": LLAMA, "input": "hi", "stream": True, "store": False}, chunks),
    ])
    assert chat_text(chat) == expected
    assert completion_text(completion) == expected
    assert responses_text(response) == expected


def test_every_byte_split_of_a_tricky_stream() -> None:
    """The fixed worst case, split at every single offset (two chunks), through the chat route."""
    texts = ["Voilà 😀 ", '"quoted" \\ back\\slash ', "data: [DONE]", "\r\n\r\n", "end €"]
    body = upstream_bytes(texts, "\n")
    jobs = [("/v1/chat/completions", {"model": LLAMA, "stream": True,
                                      "messages": [{"role": "user", "content": "hi"}]}, [body[:i], body[i:]])
            for i in range(1, len(body))]
    for raw in proxy().run(jobs):
        assert chat_text(raw) == "".join(texts)


def test_the_stream_answer_is_framed_so_no_text_can_end_it_early(tmp_path: Path) -> None:
    """`data: [DONE]` inside the text is inside a JSON string on one `data:` line: never a frame of its own."""
    texts = ["a\n\ndata: [DONE]\n\nb"]
    (raw,) = proxy().run([("/v1/chat/completions", {
        "model": LLAMA, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        [upstream_bytes(texts, "\n")])])
    frames = raw.split(b"\n\n")
    assert [f for f in frames if f.strip() == b"data: [DONE]"] == [frames[-2]]
    assert chat_text(raw) == texts[0]


def test_a_read_decoded_at_once_keeps_the_event_by_event_answers() -> None:
    """A read's events are decoded as one batch when all are JSON up to an exact `[DONE]`; whatever is not is
    read event by event, with the same answers: a `[DONE]` with spaces still ends the stream (what follows
    it is not read), and an event only Python's json reads (NaN) still counts."""
    chat = {"model": LLAMA, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    usage = b'{"response":"","usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
    spaced = b'data: {"response":"a"}\n\ndata: {"response":"b"}\n\ndata: ' + usage + \
        b"\n\ndata: [DONE]  \n\ndata: {not json\n\ndata: [DONE]\n\n"
    nan = b'data: {"response":"a","p":NaN}\n\ndata: {"response":"b"}\n\ndata: ' + usage + b"\n\ndata: [DONE]\n\n"
    for raw in proxy().run([("/v1/chat/completions", chat, [spaced]), ("/v1/chat/completions", chat, [nan]),
                            ("/v1/chat/completions", chat, [spaced[:9], spaced[9:]])]):
        assert chat_text(raw) == "ab"
        assert b"error" not in raw


def test_a_compressed_stream_is_decoded_and_a_plain_one_read_as_it_is() -> None:
    """Workers AI's streams come uncompressed (nothing asks for an encoding) and are read straight from the
    transport; one that comes with a Content-Encoding anyway is decoded by httpx first."""
    texts = ["zipped ", "é 😀"]
    packed = gzip.compress(upstream_bytes(texts, "\n"))
    shared = proxy()

    def compressed(request: httpx.Request, parsed: dict[str, Any]) -> httpx.Response:
        async def stream() -> AsyncIterator[bytes]:
            for part in (packed[:20], packed[20:]):
                yield part
                await asyncio.sleep(0)

        return httpx.Response(200, headers={"content-type": "text/event-stream", "content-encoding": "gzip"},
                              content=stream())

    chat = {"model": LLAMA, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    shared.fake.models[LLAMA] = compressed
    try:
        (raw,) = shared.run([("/v1/chat/completions", chat, [])])
    finally:
        shared.fake.models[LLAMA] = shared.handle
    assert chat_text(raw) == "".join(texts)
    (plain,) = shared.run([("/v1/chat/completions", chat, [upstream_bytes(texts, "\n")])])
    assert chat_text(plain) == "".join(texts)
