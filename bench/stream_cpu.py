"""CPU of one streamed chat request through the whole proxy app, in-process: middleware, route, service, writes.

Starts bench/fake_upstream.py (zero-latency Workers AI on loopback, 20-event native streams) and, in this
process, builds the app `cfai serve` runs (`create_app`, keys on, a key from the key store) and calls it as an
ASGI server would, one streamed `/v1/chat/completions` after another: a request message, then every `send` the
app makes is taken at once (no sockets on the client side, so what is measured is the app and its upstream
client). It prints the CPU time of this process per request (user + system, the median of rounds), the number
of body writes per stream, the CPU before the first body message (`head`), between the last two and after the last
one, and the garbage collector's share. CPU time moves less than wall time with the machine's load, but on a
shared 2-core VM still ±30 % between rounds: for a steady figure count instructions (callgrind at two `--count`s, with
`PYTHONHASHSEED=0`; the difference divided by the difference in streams). Run two builds alternately:

    python bench/stream_cpu.py                                     # the build this script sits in
    PYTHONPATH=/other/checkout python bench/stream_cpu.py          # another build, same script
    python bench/stream_cpu.py --profile 3000 | head -60           # cProfile of 3000 streams, by own time
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out python bench/stream_cpu.py --count 500

`--count N` runs N streams after the warm-up (200) and nothing else (for callgrind: instructions, not time).
`--first` (with `--count`) counts only each request's start to its first body message under callgrind: build
the toggle once, then run with collection off at start (the figure is the total divided by N):

    cc -O2 -shared -fPIC -o /tmp/cgtoggle.so bench/cgtoggle.c
    PYTHONHASHSEED=0 valgrind --tool=callgrind --collect-atstart=no --dump-instr=no \
        python bench/stream_cpu.py --count 300 --first /tmp/cgtoggle.so
`--plain` sends the same chat without `"stream": true` (one JSON answer): the non-stream request's CPU, which
every figure above then counts instead of a stream's. `--lean-relay` calls bench/lean_relay.py's app instead of
cfai's (Starlette and cfai's upstream client relaying the native stream's bytes, nothing else), the same way: what
the stack itself costs (`--first`: to its first body message).
"""

from __future__ import annotations

import argparse
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
from inproc import Message, call, serving_app, with_fake_upstream  # noqa: E402

BODY = (b'{"model":"@cf/meta/llama-3.1-8b-instruct-fast","stream":true,'
        b'"messages":[{"role":"user","content":"Say hello."}]}')
PLAIN = b'{"model":"@cf/meta/llama-3.1-8b-instruct-fast","messages":[{"role":"user","content":"Say hello."}]}'

async def one(app: Callable[..., Awaitable[None]], key: str, writes: list[int], tails: list[float],
              lasts: list[float], body: bytes = BODY, heads: list[float] | None = None,
              toggle: Callable[[], None] | None = None) -> None:
    """One stream; `tails` gets the CPU time the app spent after its last body message (before it returned),
    `lasts` the time between the last two body messages (the events, then `[DONE]` and the end), `heads` the
    time before its first body message (the client's first byte of the answer, less the upstream's own time)."""
    count = 0
    ended, previous = [0.0], [0.0]
    began = time.process_time()

    def seen(message: Message) -> None:
        nonlocal count
        if message["type"] == "http.response.start":
            assert message["status"] == 200, message
        elif message["type"] == "http.response.body":
            count += 1
            if count == 1 and toggle is not None:
                toggle()  # callgrind's collection off: the first body message is written
            now = time.process_time()
            if count == 1 and heads is not None:
                heads.append(now - began)
            if not message.get("more_body", False):
                ended[0] = now
                if count > 1:
                    lasts.append(now - previous[0])
            previous[0] = now

    if toggle is not None:
        toggle()  # callgrind's collection on: the request arrives
    await call(app, "/v1/chat/completions", body, key, seen)
    writes.append(count)
    tails.append(time.process_time() - ended[0])


async def run(port: int, args: argparse.Namespace) -> None:
    if args.lean_relay:
        from lean_relay import app_for

        await measure(_at(app_for(f"http://127.0.0.1:{port}"), RELAY_PATH), "", args)
        return
    if args.count:
        quiet_timers()
    async with serving_app(port, "cfai-stream-cpu-") as (app, key):
        await measure(app, key, args)


def quiet_timers() -> None:
    """Nothing on a timer while callgrind counts (as bench/keys_instructions.py): the usage writer's flush every
    second (a new connection, the schema read again) and the batch executor's look every 2 s, which a slower run
    under valgrind does more often, would be counted as the requests'. The rows are written at the end."""
    from cfai_cli.server import recorder
    from cfai_cli.service.batch_executor import BatchExecutor

    for cls, name in ((recorder.UsageRecorder, "interval"), (BatchExecutor, "poll_interval")):
        assert cls.__init__.__kwdefaults__ is not None
        cls.__init__.__kwdefaults__[name] = 3600.0


RELAY_PATH = "/client/v4/accounts/0123456789abcdef0123456789abcdef/ai/run/@cf/meta/llama-3.1-8b-instruct-fast"
NATIVE = b'{"stream":true,"messages":[{"role":"user","content":"Say hello."}]}'


def _at(app: Callable[..., Awaitable[None]], path: str) -> Callable[..., Awaitable[None]]:
    """`app` with every request sent to `path` (the relay forwards the native run path, not /v1/chat/completions)."""

    async def at(scope: dict[str, object], receive: object, send: object) -> None:
        await app({**scope, "path": path, "raw_path": path.encode()}, receive, send)

    return at


async def measure(app: Callable[..., Awaitable[None]], key: str, args: argparse.Namespace) -> None:
    body = NATIVE if args.lean_relay else PLAIN if args.plain else BODY
    writes: list[int] = []
    tails: list[float] = []
    lasts: list[float] = []
    for _ in range(200):  # warm-up: routes imported, connections open, caches full
        await one(app, key, writes, tails, lasts, body)
    if args.count:
        toggle = None
        if args.first:
            import ctypes

            toggle = ctypes.CDLL(args.first).cg_toggle
        for _ in range(args.count):
            await one(app, key, writes, tails, lasts, body, toggle=toggle)
        return
    if args.profile:
        profiler = cProfile.Profile(time.process_time)  # CPU time: a write stalled by the machine is not ours
        profiler.enable()
        for _ in range(args.profile):
            await one(app, key, writes, tails, lasts, body)
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
    heads: list[float] = []
    for _ in range(args.rounds):
        start = time.process_time()
        for _ in range(args.requests):
            await one(app, key, writes, tails, lasts, body, heads)
        rounds.append((time.process_time() - start) / args.requests * 1e6)
    import cfai_cli

    what = "chat" if args.plain else "stream"
    print(f"cfai from {Path(cfai_cli.__file__).parent.parent}; {os.cpu_count()} CPUs; "
          f"{args.requests} {what}s x {args.rounds} rounds; body writes per {what} {statistics.median(writes)}")
    print(f"{what:7} {statistics.median(rounds):8.1f} µs CPU per {what} (median; rounds "
          f"{', '.join(f'{r:.0f}' for r in rounds)})")
    print(f"head    {statistics.median(heads) * 1e6:8.1f} µs CPU before the first body message (median; the fake "
          "upstream's own work, in another process, not counted)")
    if lasts:
        print(f"last    {statistics.median(lasts) * 1e6:8.1f} µs CPU between the last two body messages (median)")
    else:  # one body message: a JSON answer, or a stream read at once (the read with [DONE] rides with the end)
        print(f"last         n/a: one body message per {what}")
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
    parser.add_argument("--plain", action="store_true", help="a non-stream chat request (JSON answer) instead")
    parser.add_argument("--lean-relay", action="store_true", help="bench/lean_relay.py's app instead of cfai's")
    parser.add_argument("--count", type=int, default=0, help="only run N streams after the warm-up (callgrind)")
    parser.add_argument("--first", metavar="LIB", help="with --count under callgrind --collect-atstart=no: count "
                        "from each request's start to its first body message (LIB: bench/cgtoggle.c built)")
    parser.add_argument("--profile", type=int, default=0, help="cProfile N streams and print the top functions")
    parser.add_argument("--sort", default="tottime", help="pstats sort key for --profile (default tottime)")
    parser.add_argument("--dump", metavar="FILE", help="with --profile: also write the pstats data to FILE")
    parser.add_argument("--lines", type=int, default=50, help="functions printed by --profile (default 50)")
    args = parser.parse_args()
    with_fake_upstream(lambda port: run(port, args))


if __name__ == "__main__":
    main()
