"""The floor for big payloads through any proxy on this machine: a relay that does nothing but move the bytes.

Starts bench/fake_upstream.py, `cfai serve` (keys on, as bench/payloads.py does) and, in a child process, a
minimal relay (asyncio streams on uvloop, no framework, no JSON parsing, no checks) that answers

- an images request by fetching four images from the fake at once and sending their four bodies joined;
- an embeddings request by fetching the 2,048 inputs in 21 batches of 100 (four at a time, as cfai does) and
  sending the 21 bodies joined;

then times direct calls (as bench/payloads.py does), the relay and cfai in the same interleaved rounds. What the
relay adds over direct is what moving the answer through one more process costs here (two more copies through
loopback TCP, one more process's reads and writes on the same two cores), before any work a real proxy does;
"≤ 1.10× direct" can be no nearer than that.

    python bench/payload_floor.py --rounds 9
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from payloads import EMBED_MODEL, IMAGE_MODEL, TEXTS, Proxy, post  # noqa: E402
from run import ACCOUNT, Bench, free_port  # noqa: E402


def _request(model: str, body: bytes) -> bytes:
    return (f"POST /client/v4/accounts/{ACCOUNT}/ai/run/{model} HTTP/1.1\r\nhost: fake\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n").encode() + body


async def _fetch(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 18)
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    body = await reader.readexactly(length)
    writer.close()
    return body


async def _relay(upstream: int, port: int) -> None:
    image = _request(IMAGE_MODEL, b'{"prompt":"a fox","steps":4}')
    batches = [_request(EMBED_MODEL, json.dumps({"text": TEXTS[i:i + 100]}).encode()) for i in range(0, 2048, 100)]
    limit = asyncio.Semaphore(4)

    async def batch(request: bytes) -> bytes:
        async with limit:
            return await _fetch(upstream, request)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                calls = [_fetch(upstream, image) for _ in range(4)] if b"/images" in head \
                    else [batch(request) for request in batches]
                body = b'{"data":[' + b",".join(await asyncio.gather(*calls)) + b"]}"
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
                             % len(body) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds; the first is dropped (default 9)")
    parser.add_argument("--relay", nargs=2, type=int, metavar=("UPSTREAM", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.relay:  # the child process
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(_relay(*args.relay))
        return
    bench = Bench(argparse.Namespace(python_load=False, seconds=1.0))
    times: dict[str, list[float]] = {}
    try:
        bench.start([sys.executable, str(HERE / "fake_upstream.py"), "--port", str(bench.up_port)],
                    f"http://127.0.0.1:{bench.up_port}/health")
        relay_port = free_port()
        bench.start([sys.executable, __file__, "--relay", str(bench.up_port), str(relay_port)],
                    f"http://127.0.0.1:{bench.up_port}/health")
        for _ in range(100):  # the relay answers no /health: wait until it listens
            try:
                socket.create_connection(("127.0.0.1", relay_port)).close()
                break
            except OSError:
                time.sleep(0.05)
        proxy = Proxy(bench, HERE.parent)
        direct = f"http://127.0.0.1:{bench.up_port}/client/v4/accounts/{ACCOUNT}/ai/run"
        relay = f"http://127.0.0.1:{relay_port}"
        calls: dict[str, Any] = {
            "images direct": lambda: sum(post(f"{direct}/{IMAGE_MODEL}", {"prompt": "a fox", "steps": 4}, {})[0]
                                         for _ in range(4)),
            "images relay": lambda: post(f"{relay}/images", {"n": 4}, {})[0],
            "images cfai": lambda: post(f"{proxy.base}/images/generations", {
                "model": IMAGE_MODEL, "prompt": "a fox", "n": 4, "response_format": "b64_json"}, proxy.headers)[0],
            "embeddings direct": lambda: post(f"{direct}/{EMBED_MODEL}", {"text": TEXTS}, {})[0],
            "embeddings relay": lambda: post(f"{relay}/embeddings", {"n": 2048}, {})[0],
            "embeddings cfai (float)": lambda: post(f"{proxy.base}/embeddings", {
                "model": EMBED_MODEL, "input": TEXTS, "encoding_format": "float"}, proxy.headers)[0],
        }
        for _ in range(args.rounds):
            for name, call in calls.items():
                times.setdefault(name, []).append(call())
    finally:
        bench.close()
    print(f"{args.rounds - 1} interleaved rounds, medians (times include the client's JSON parse)\n")
    print("| scenario | time | vs direct |\n| --- | ---: | ---: |")
    for name, rows in times.items():
        base = statistics.median(times[name.split()[0] + " direct"][1:])
        t = statistics.median(rows[1:])
        print(f"| {name} | {t * 1000:.1f} ms | {t / base:.2f}× |")


if __name__ == "__main__":
    main()
