"""CPU of one big-payload request through the whole proxy app, in-process: 2,048 embeddings or four images.

Starts bench/fake_upstream.py and, in this process, builds the app `cfai serve` runs (`create_app`, keys on)
and calls it as an ASGI server would (as bench/stream_cpu.py does for streams), one request after another:
`embeddings` (2,048 inputs to bge-base, `--format float` or `base64`) or `images` (n=4 flux-1-schnell,
b64_json). The answer's body messages are only counted, so what is measured is the app, its upstream client and
the fake's share of the loopback, not a client's parse. It prints the CPU time of this process per request
(median of rounds) and the answer's size; `--profile N` prints cProfile's top functions. Run two builds
alternately (`PYTHONPATH=/other/checkout python bench/payload_cpu.py …`): on the shared 2-core VM CPU time still
moves ±20 % between runs, so compare interleaved rounds, or count instructions: `--count N` runs N requests after
the warm-up and nothing else, so callgrind at two counts gives a request's instructions by difference.

    python bench/payload_cpu.py embeddings --format float
    python bench/payload_cpu.py images --profile 20 | head -40
    PYTHONHASHSEED=0 valgrind --tool=callgrind python bench/payload_cpu.py images --count 3
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from inproc import Message, call, serving_app, with_fake_upstream  # noqa: E402

TEXTS = [f"document number {i}: a sentence or two of text to embed, as a search index would send" for i in range(2048)]


def request_for(kind: str, fmt: str) -> tuple[str, bytes]:
    if kind == "images":
        return "/v1/images/generations", json.dumps({"model": "@cf/black-forest-labs/flux-1-schnell",
                                                     "prompt": "a fox", "n": 4, "response_format": "b64_json"}).encode()
    return "/v1/embeddings", json.dumps({"model": "@cf/baai/bge-base-en-v1.5", "input": TEXTS,
                                         "encoding_format": fmt}).encode()


async def one(app: Callable[..., Awaitable[None]], key: str, path: str, body: bytes) -> int:
    """One request; the answer's size in bytes."""
    size = 0

    def seen(message: Message) -> None:
        nonlocal size
        if message["type"] == "http.response.start":
            assert message["status"] == 200, message
        elif message["type"] == "http.response.body":
            size += len(message.get("body", b""))

    await call(app, path, body, key, seen)
    return size


async def run(port: int, args: argparse.Namespace) -> None:
    async with serving_app(port, "cfai-payload-cpu-") as (app, key):
        await measure(app, key, args)


async def measure(app: Callable[..., Awaitable[None]], key: str, args: argparse.Namespace) -> None:
    path, body = request_for(args.kind, args.format)
    for _ in range(2):  # warm-up: route imported, connections open
        size = await one(app, key, path, body)
    if args.count:
        for _ in range(args.count):
            await one(app, key, path, body)
        return
    if args.profile:
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        for _ in range(args.profile):
            await one(app, key, path, body)
        profiler.disable()
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.lines)
        return
    rounds = []
    for _ in range(args.rounds):
        start = time.process_time()
        for _ in range(args.requests):
            await one(app, key, path, body)
        rounds.append((time.process_time() - start) / args.requests * 1e3)
    import cfai_cli

    label = args.kind if args.kind == "images" else f"embeddings ({args.format})"
    print(f"cfai from {Path(cfai_cli.__file__).parent.parent}; {os.cpu_count()} CPUs; {label}, answer "
          f"{size / 1e6:.1f} MB; {statistics.median(rounds):.1f} ms CPU per request (median; rounds "
          f"{', '.join(f'{r:.1f}' for r in rounds)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["embeddings", "images"])
    parser.add_argument("--format", choices=["float", "base64"], default="float")
    parser.add_argument("--requests", type=int, default=5, help="requests per round (default 5)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the median is printed (default 5)")
    parser.add_argument("--count", type=int, default=0, help="only run N requests after the warm-up (callgrind)")
    parser.add_argument("--profile", type=int, default=0, help="cProfile N requests and print the top functions")
    parser.add_argument("--sort", default="tottime", help="pstats sort key for --profile (default tottime)")
    parser.add_argument("--lines", type=int, default=40, help="functions printed by --profile (default 40)")
    args = parser.parse_args()
    with_fake_upstream(lambda port: run(port, args))


if __name__ == "__main__":
    main()
