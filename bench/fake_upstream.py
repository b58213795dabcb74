"""A zero-latency fake Workers AI for benchmarks: raw asyncio HTTP/1.1 on 127.0.0.1, keep-alive, no framework.

Speaks the real wire format: `POST .../ai/run/{model}` answers the native envelope
`{"result":{"response":…,"usage":…},"success":true,"errors":[],"messages":[]}`, or, when the JSON body
asks for `"stream": true`, a native SSE stream of 20 `{"response":"tok"}` events, a usage event and
`data: [DONE]`. `POST .../chat/completions` is an OpenAI-compatible endpoint with the same answer (a
`chat.completion`, or 20 `chat.completion.chunk` events and `data: [DONE]` for `"stream": true`), so OpenAI
clients such as the `llm` CLI can be timed against the same fake (bench/startup.py). Every answer is prebuilt
bytes, so the fake costs next to nothing per request.

Two big-payload models for bench/payloads.py: a bge model (`…/baai/bge-…`) answers `{"text": [...]}` with
one 768-float vector per input (`{"shape":[n,768],"data":[…],"pooling":"mean"}`, any n: the batch limit of
100 is the proxy's business), and flux-1-schnell answers `{"result":{"image":"<base64>"}}` holding a
~1 MB JPEG (incompressible bytes behind a real JPEG header). `--stream-gap-ms` holds back a stream's events
after the first one, so that the time to first byte can be told apart from the time to the last.

    python bench/fake_upstream.py --port 8700          # serves until Ctrl-C
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import struct

STREAM_CHUNKS = 20
USAGE = {"prompt_tokens": 12, "completion_tokens": STREAM_CHUNKS, "total_tokens": 12 + STREAM_CHUNKS}


def _answer(status: str, content_type: str, body: bytes) -> bytes:
    head = (f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
            "cf-ray: 0000000000000000-LHR\r\n\r\n")
    return head.encode("latin-1") + body


JSON_BODY = json.dumps({
    "result": {"response": "Hello! How can I help you today?", "tool_calls": [], "usage": USAGE},
    "success": True, "errors": [], "messages": [],
}, separators=(",", ":")).encode()
SSE_BODY = b"".join(
    [b'data: {"response":"tok%d ","p":"abcdefgh"}\n\n' % i for i in range(STREAM_CHUNKS)]
    + [b'data: {"response":"","usage":' + json.dumps(USAGE, separators=(",", ":")).encode() + b"}\n\n",
       b"data: [DONE]\n\n"])
JSON_ANSWER = _answer("200 OK", "application/json", JSON_BODY)
SSE_ANSWER = _answer("200 OK", "text/event-stream", SSE_BODY)
EMBEDDING_DIMS = 768
_rng = random.Random(7)
# One vector's JSON, as Workers AI writes floats (shortest repr, ~20 characters each); every input gets it.
VECTOR = json.dumps([_rng.uniform(-0.1, 0.1) for _ in range(EMBEDDING_DIMS)], separators=(",", ":")).encode()
# A JPEG header with its size (SOF0: 1024x1024) and ~1 MB of random bytes: what sniff_image reads, and
# incompressible like a real photo's entropy-coded data.
JPEG = (b"\xff\xd8\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
        + b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 1024, 1024, 1) + b"\x01\x11\x00"
        + _rng.randbytes(1_000_000).replace(b"\xff", b"\x00") + b"\xff\xd9")
IMAGE_ANSWER = _answer("200 OK", "application/json", b'{"result":{"image":"' + base64.b64encode(JPEG)
                       + b'"},"success":true,"errors":[],"messages":[]}')


def embeddings_answer(body: bytes) -> bytes:
    texts = json.loads(body).get("text", [])
    count = 1 if isinstance(texts, str) else len(texts)
    result = (b'{"result":{"shape":[%d,%d],"data":[' % (count, EMBEDDING_DIMS) + b",".join([VECTOR] * count)
              + b'],"pooling":"mean"},"success":true,"errors":[],"messages":[]}')
    return _answer("200 OK", "application/json", result)


OPENAI_JSON = _answer("200 OK", "application/json", json.dumps({
    "id": "chatcmpl-fake", "object": "chat.completion", "created": 1764633600, "model": "fake",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
                 "finish_reason": "stop", "logprobs": None}],
    "usage": USAGE,
}, separators=(",", ":")).encode())


def _openai_chunk(delta: dict[str, str], finish: str | None, usage: dict[str, int] | None = None) -> bytes:
    chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1764633600, "model": "fake",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
    if usage is not None:
        chunk["usage"] = usage
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


OPENAI_SSE = _answer("200 OK", "text/event-stream", b"".join(
    [_openai_chunk({"role": "assistant", "content": ""}, None)]
    + [_openai_chunk({"content": f"tok{i} "}, None) for i in range(STREAM_CHUNKS)]
    + [_openai_chunk({}, "stop", USAGE), b"data: [DONE]\n\n"]))
NOT_FOUND = _answer("404 Not Found", "application/json",
                    b'{"result":null,"success":false,"errors":[{"code":7000,"message":"No route for that URI"}],'
                    b'"messages":[]}')


class _Http(asyncio.Protocol):
    gap: float = 0.0  # seconds between a stream's first event and the rest (--stream-gap-ms)

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio's classes

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            length = 0
            chunked = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding" and b"chunked" in value.lower():
                    chunked = True
            start = end + 4
            if chunked:  # not sent by httpx for JSON bodies, but be correct anyway
                stop = self.buffer.find(b"0\r\n\r\n", start)
                if stop < 0:
                    return
                body, self.buffer = self.buffer[start:stop], self.buffer[stop + 5:]
            else:
                if len(self.buffer) < start + length:
                    return
                body, self.buffer = self.buffer[start:start + length], self.buffer[start + length:]
            self._respond(head, body)

    def _respond(self, head: bytes, body: bytes) -> None:
        assert self.transport is not None
        request_line = head.split(b"\r\n", 1)[0]
        stream = b'"stream": true' in body or b'"stream":true' in body
        if b"/chat/completions" in request_line:
            self.transport.write(OPENAI_SSE if stream else OPENAI_JSON)
        elif b"/ai/run/" not in request_line:
            self.transport.write(NOT_FOUND)
        elif b"/baai/bge-" in request_line:
            self.transport.write(embeddings_answer(body))
        elif b"/flux-1-schnell" in request_line:
            self.transport.write(IMAGE_ANSWER)
        elif stream and self.gap:
            first = SSE_ANSWER.index(b"\n\n", SSE_ANSWER.index(b"\r\n\r\n") + 4) + 2
            self.transport.write(SSE_ANSWER[:first])
            asyncio.get_running_loop().call_later(self.gap, self.transport.write, SSE_ANSWER[first:])
        elif stream:
            self.transport.write(SSE_ANSWER)
        else:
            self.transport.write(JSON_ANSWER)


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Http, host, port, backlog=1024, reuse_address=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8700)
    parser.add_argument("--stream-gap-ms", type=float, default=0.0,
                        help="hold a stream's events after the first for this long (default 0)")
    args = parser.parse_args()
    _Http.gap = args.stream_gap_ms / 1000
    try:
        import uvloop  # optional: the fake should never be the bottleneck

        uvloop.run(serve(args.host, args.port))
    except ImportError:
        asyncio.run(serve(args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
