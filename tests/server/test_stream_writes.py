"""How a streamed answer leaves the proxy: the ASGI messages themselves (each one a socket write through every
middleware's send wrapper). Whatever arrived in one upstream read leaves in one write, the closing chunk with
it, and `[DONE]` rides on the message that ends the response (bench/streams.py measures what this saves)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings
from tests.fake_workers import FakeWorkers, native_text

pytestmark = pytest.mark.anyio

MODEL = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
WORDS = " ".join(f"w{i}" for i in range(20))


async def asgi_messages(settings: Settings, api_key: str, fake: FakeWorkers, body: dict[str, Any]
                        ) -> list[dict[str, Any]]:
    """The messages the app sends for one POST /v1/chat/completions, called as an ASGI server would."""
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

    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
    return sent


async def anyio_sleep_forever() -> None:
    import anyio

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
    # The answer (its role, its 20 words and its finish), then `[DONE]` in the message that ends it.
    assert bodies[-1] == {"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False}
    events = [json.loads(line[6:]) for m in bodies[:-1] for line in m["body"].decode().split("\n\n")
              if line.startswith("data: ")]
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"]) == WORDS
    assert [e["choices"][0]["finish_reason"] for e in events if e["choices"]][-1] == "stop"
    assert ("usage" in events[-1] and events[-1]["usage"]["completion_tokens"] == 20) is include_usage
    # One write for all of it, and one more for the usage chunk a client asked for (it is made after the
    # upstream stream ends, so it cannot be known to be last before then).
    assert len(bodies) == (3 if include_usage else 2), [m["body"][:60] for m in bodies]
