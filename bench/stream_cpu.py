"""CPU of one streamed chat request through the whole proxy app, in-process: middleware, route, service, writes.

Starts bench/fake_upstream.py (zero-latency Workers AI on loopback, 20-event native streams) and, in this
process, builds the app `cfai serve` runs (`create_app`, keys on, a key from the key store) and calls it as an
ASGI server would, one streamed `/v1/chat/completions` after another: a request message, then every `send` the
app makes is taken at once (no sockets on the client side, so what is measured is the app and its upstream
client). It prints the CPU time of this process per request (user + system, the median of rounds), the number
of body writes per stream, the CPU between the last two body messages and after the last one, and the garbage
collector's share. CPU time moves less than wall time with the machine's load, but on a shared 2-core VM still
±30 % between rounds: for a steady figure count instructions (callgrind at two `--count`s, with
`PYTHONHASHSEED=0`; the difference divided by the difference in streams). Run two builds alternately:

    python bench/stream_cpu.py                                     # the build this script sits in
    PYTHONPATH=/other/checkout python bench/stream_cpu.py          # another build, same script
    python bench/stream_cpu.py --profile 3000 | head -60           # cProfile of 3000 streams, by own time
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out python bench/stream_cpu.py --count 500

`--count N` runs N streams after the warm-up (200) and nothing else (for callgrind: instructions, not time).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from inproc import Message, post_scope, serving_app, with_fake_upstream  # noqa: E402

BODY = (b'{"model":"@cf/meta/llama-3.1-8b-instruct-fast","stream":true,'
        b'"messages":[{"role":"user","content":"Say hello."}]}')

async def one(app: Callable[..., Awaitable[None]], key: str, writes: list[int], tails: list[float],
              lasts: list[float]) -> None:
    """One stream; `tails` gets the CPU time the app spent after its last body message (before it returned),
    `lasts` the time between the last two body messages (the events, then `[DONE]` and the end)."""
    sent = False
    done = asyncio.Event()
    count = 0

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": BODY, "more_body": False}
        await done.wait()  # the client stays connected until the answer is over
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal count
        if message["type"] == "http.response.start":
            assert message["status"] == 200, message
        elif message["type"] == "http.response.body":
            count += 1
            now = time.process_time()
            if not message.get("more_body", False):
                done.set()
                ended[0] = now
                if count > 1:
                    lasts.append(now - previous[0])
            previous[0] = now

    ended, previous = [0.0], [0.0]
    await app(post_scope("/v1/chat/completions", BODY, key), receive, send)
    writes.append(count)
    tails.append(time.process_time() - ended[0])


async def run(port: int, args: argparse.Namespace) -> None:
    async with serving_app(port, "cfai-stream-cpu-") as (app, key):
        await measure(app, key, args)


async def measure(app: Callable[..., Awaitable[None]], key: str, args: argparse.Namespace) -> None:
    writes: list[int] = []
    tails: list[float] = []
    lasts: list[float] = []
    for _ in range(200):  # warm-up: routes imported, connections open, caches full
        await one(app, key, writes, tails, lasts)
    if args.count:
        for _ in range(args.count):
            await one(app, key, writes, tails, lasts)
        return
    if args.profile:
        profiler = cProfile.Profile(time.process_time)  # CPU time: a write stalled by the machine is not ours
        profiler.enable()
        for _ in range(args.profile):
            await one(app, key, writes, tails, lasts)
        profiler.disable()
        if args.dump:
            profiler.dump_stats(args.dump)
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.lines)
        return
    import gc

    collected = [0, 0, 0]
    spent = [0.0]
    began = [0.0]

    def watch_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.process_time()
        else:
            collected[info["generation"]] += 1
            spent[0] += time.process_time() - began[0]

    gc.callbacks.append(watch_gc)
    rounds = []
    for _ in range(args.rounds):
        start = time.process_time()
        for _ in range(args.requests):
            await one(app, key, writes, tails, lasts)
        rounds.append((time.process_time() - start) / args.requests * 1e6)
    import cfai_cli

    print(f"cfai from {Path(cfai_cli.__file__).parent.parent}; {os.cpu_count()} CPUs; "
          f"{args.requests} streams x {args.rounds} rounds; body writes per stream {statistics.median(writes)}")
    print(f"stream  {statistics.median(rounds):8.1f} µs CPU per stream (median; rounds "
          f"{', '.join(f'{r:.0f}' for r in rounds)})")
    if lasts:
        print(f"last    {statistics.median(lasts) * 1e6:8.1f} µs CPU between the last two body messages (median)")
    else:  # an answer read at once leaves in one message (the read with [DONE] rides with the end)
        print("last         n/a: one body message per stream")
    print(f"tail    {statistics.median(tails) * 1e6:8.1f} µs CPU after the last body message, before the app "
          "returned (median)")
    streams = args.requests * args.rounds
    print(f"gc      {spent[0] / streams * 1e6:8.1f} µs CPU per stream in the garbage collector; collections "
          f"per 1,000 streams by generation: {', '.join(f'{c * 1000 / streams:.0f}' for c in collected)}; "
          f"{len(gc.get_objects())} tracked objects, {gc.get_freeze_count()} frozen")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="streams per round (default 1000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the median is printed (default 5)")
    parser.add_argument("--count", type=int, default=0, help="only run N streams after the warm-up (callgrind)")
    parser.add_argument("--profile", type=int, default=0, help="cProfile N streams and print the top functions")
    parser.add_argument("--sort", default="tottime", help="pstats sort key for --profile (default tottime)")
    parser.add_argument("--dump", metavar="FILE", help="with --profile: also write the pstats data to FILE")
    parser.add_argument("--lines", type=int, default=50, help="functions printed by --profile (default 50)")
    args = parser.parse_args()
    with_fake_upstream(lambda port: run(port, args))


if __name__ == "__main__":
    main()
