"""How a streamed answer leaves the proxy: the ASGI messages themselves (each one a socket write through every
middleware's send wrapper). Whatever arrived in one upstream read leaves in one write, the closing chunk with
it, and `[DONE]` rides on the message that ends the response; the read that ends the upstream stream leaves
with it too, so an answer read at once is one write (bench/streams.py measures what this saves). Nothing is
held across an upstream read: each read's events leave before the next read is waited for."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings
from tests.fake_workers import FakeWorkers, native_text, sse, sse_response

pytestmark = pytest.mark.anyio

MODEL = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
WORDS = " ".join(f"w{i}" for i in range(20))
USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def held_reads(first: str, rest: str, released: anyio.Event) -> Any:
    """An upstream stream that sends `first`'s event, then waits (at most 5 s) until `released` is set before
    it sends `rest`'s and the end: a proxy that held the first read for the next would never finish."""
    async def reads() -> Any:
        yield sse({"response": first, "p": "x"}, done=False)
        with anyio.fail_after(5):
            await released.wait()
        yield sse({"response": rest, "p": "x"}, {"response": "", "usage": USAGE})

    return sse_response(reads())


async def asgi_messages(settings: Settings, api_key: str, fake: FakeWorkers, body: dict[str, Any],
                        on_body: Callable[[bytes], None] = lambda body: None) -> list[dict[str, Any]]:
    """The messages the app sends for one POST /v1/chat/completions, called as an ASGI server would
    (`on_body` called with each body message's bytes as it is sent)."""
    app = create_app(settings, transport=fake.transport())
    raw = json.dumps(body).encode()
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 5000), "server": ("proxy.test", 80),
             "headers": [(b"host", b"proxy.test"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(raw)).encode()),
                         (b"authorization", f"Bearer {api_key}".encode())]}
    sent: list[dict[str, Any]] = []
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await anyio_sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body":
            on_body(message["body"])

    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
    return sent


async def anyio_sleep_forever() -> None:
    await anyio.sleep_forever()


@pytest.mark.parametrize("include_usage", [False, True])
async def test_an_answer_read_at_once_leaves_in_one_write_and_ends_with_done(
        settings: Settings, api_key: str, fake: FakeWorkers, include_usage: bool) -> None:
    fake.models[MODEL] = native_text(WORDS)
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    sent = await asgi_messages(settings, api_key, fake, body)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    bodies = [m for m in sent if m["type"] == "http.response.body"]
    # One message for all of it: the answer (its role, its 20 words and its finish), the usage chunk a client
    # asked for (made once the upstream stream has ended), and `[DONE]`, in the message that ends the response.
    assert len(bodies) == 1 and bodies[0]["more_body"] is False, [m["body"][:60] for m in bodies]
    raw = bodies[0]["body"]
    assert raw.endswith(b"\n\ndata: [DONE]\n\n") and raw.count(b"[DONE]") == 1
    events = [json.loads(line[6:]) for line in raw.decode().split("\n\n") if line.startswith("data: {")]
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"]) == WORDS
    assert [e["choices"][0]["finish_reason"] for e in events if e["choices"]][-1] == "stop"
    assert ("usage" in events[-1] and events[-1]["usage"]["completion_tokens"] == 20) is include_usage


@pytest.mark.parametrize("include_usage", [False, True])
async def test_each_reads_events_leave_before_the_next_read(settings: Settings, api_key: str, fake: FakeWorkers,
                                                            include_usage: bool) -> None:
    # The upstream sends its first events, then waits until the proxy has sent them to the client (the test's
    # `send` sees them) before it sends the rest: a proxy that held them for the next read would never finish.
    first_out = anyio.Event()

    def handle(request: Any, parsed: dict[str, Any]) -> Any:
        return held_reads("one", " two", first_out)

    fake.models[MODEL] = handle
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    sent = await asgi_messages(settings, api_key, fake, body, on_body=lambda _: first_out.set())
    bodies = [m["body"] for m in sent if m["type"] == "http.response.body"]
    assert len(bodies) == 2 and b'"one"' in bodies[0] and b"[DONE]" not in bodies[0], bodies
    assert b'" two"' in bodies[1] and bodies[1].endswith(b"data: [DONE]\n\n")
    assert (b'"usage":{' in bodies[1]) is include_usage


async def test_one_choice_ending_holds_nothing_of_the_others(settings: Settings, api_key: str,
                                                             fake: FakeWorkers) -> None:
    # n=2: one choice's upstream answers whole at once, the other sends a first read and waits until the
    # client has it. The first choice's end is not the answer's: the second's events still leave read by read.
    seen = anyio.Event()
    calls: list[int] = []

    def handle(request: Any, parsed: dict[str, Any]) -> Any:
        calls.append(1)
        if len(calls) == 1:
            return sse_response(sse({"response": "whole", "p": "x"}, {"response": "", "usage": USAGE}))
        return held_reads("part-one", " part-two", seen)

    def on_body(raw: bytes) -> None:
        if b"part-one" in raw:
            seen.set()

    fake.models[MODEL] = handle
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True, "n": 2}
    sent = await asgi_messages(settings, api_key, fake, body, on_body=on_body)
    raw = b"".join(m["body"] for m in sent if m["type"] == "http.response.body")
    assert b"whole" in raw and b"part-one" in raw and raw.endswith(b"data: [DONE]\n\n"), raw[-200:]
    assert b'" part-two"' in raw and b'"error"' not in raw


@pytest.mark.parametrize("tools", [False, True])
async def test_a_streams_head_has_the_headers_starlette_renders_for_it(settings: Settings, api_key: str,
                                                                       fake: FakeWorkers, tools: bool) -> None:
    # The usual stream's headers are rendered once (server.routes.common), one with headers of its own (a hosted
    # tool left out) per answer: both as Starlette's StreamingResponse renders them, first in the head.
    from starlette.responses import StreamingResponse

    fake.models[MODEL] = native_text(WORDS)
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    own = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "X-Accel-Buffering": "no"}
    if tools:
        body["tools"] = [{"type": "web_search"}]
        own["x-cfai-dropped-tools"] = "web_search"
    sent = await asgi_messages(settings, api_key, fake, body)
    expected = StreamingResponse(iter(()), media_type="text/event-stream", headers=own).raw_headers
    head = sent[0]["headers"]
    assert head[:len(expected)] == expected and (b"x-cfai-dropped-tools" in dict(head)) is tools


@pytest.mark.parametrize("include_usage", [False, True])
async def test_a_stream_read_to_its_end_leaves_nothing_for_the_loops_finalizer(
        settings: Settings, api_key: str, fake: FakeWorkers, include_usage: bool) -> None:
    # The reader stops at `[DONE]` without reading the upstream body on. Every async iterator of the proxy's
    # between that body and the client is closed by its owner or is not a generator: one left suspended was
    # closed by the loop's finalizer hook when freed (a task, a loop turn and a thread-safe wake-up a stream).
    import gc
    import sys

    async def reads() -> Any:  # a body read from the network as it comes (a body given whole is closed at once)
        yield sse(*({"response": f" w{i}", "p": "x"} for i in range(20)), {"response": "", "usage": USAGE})

    fake.models[MODEL] = lambda request, parsed: sse_response(reads())
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    finalized: list[str] = []
    first_iter, finalizer = sys.get_asyncgen_hooks()
    assert finalizer is not None

    def watching(agen: Any) -> None:
        if "cfai_cli" in agen.ag_code.co_filename:
            finalized.append(agen.ag_code.co_qualname)
        finalizer(agen)

    sys.set_asyncgen_hooks(first_iter, watching)
    try:
        sent = await asgi_messages(settings, api_key, fake, body)
        gc.collect()
        await anyio.sleep(0)
    finally:
        sys.set_asyncgen_hooks(first_iter, finalizer)
    raw = b"".join(m["body"] for m in sent if m["type"] == "http.response.body")
    assert raw.endswith(b"data: [DONE]\n\n") and b"w19" in raw
    assert finalized == []
