"""Where a limited key's time goes beyond the instructions callgrind counts: CPU (user and system) and system calls.

The proxy in-process, as bench/keys_instructions.py runs it (create_app, zero-latency Workers AI through
httpx.MockTransport, requests straight into the ASGI app; its `billing` and `call`), with a key of each kind in one
process. Two figures a request, for each kind and the difference from the key without limits:

- CPU time, user and system apart (getrusage of the process, every thread), and wall time, around blocks of
  `--requests` requests, the kinds alternating block by block for `--rounds` rounds (medians): what the kernel
  does for SQLite's locks and writes shows as system time, which callgrind does not count;
- with `--strace`, the system calls a request (`strace -c -f` over two run lengths, by difference, one kind a
  process): which calls SQLite makes, and how many;
- with `--callgrind`, the instructions a request the same way (bench/keys_instructions.py counts c=1 only).

`--concurrency 32` sends the requests in rounds of 32 at once (group commit). Compare two builds with
PYTHONPATH=/other/checkout (both run this script from one checkout).

    python bench/keys_syscalls.py [--requests 400] [--rounds 7] [--concurrency 1] [--kinds "no limits,rpm+tpm"]
    python bench/keys_syscalls.py --strace [--requests 400]
    python bench/keys_syscalls.py --callgrind --concurrency 32 [--requests 256]   # ~5 minutes
    python bench/keys_syscalls.py --callgrind --concurrency 32 --hold 10   # token records ride, as under wrk (round 9)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from keys_instructions import KINDS, POLICIES, billing, call, totals


async def serve(kinds: list[str], requests: int, rounds: int, concurrency: int) -> dict[str, list[list[float]]]:
    """Blocks of `requests` requests per kind, alternating: [user, sys, wall] seconds of each block."""
    if os.environ.get("BENCH_HOLD"):  # --hold: store.hot's HOLD in the measured process (keys_instructions.py)
        from cfai_cli.store.hot import HotPath

        assert HotPath.__init__.__kwdefaults__ is not None
        HotPath.__init__.__kwdefaults__["hold"] = float(os.environ["BENCH_HOLD"])
    os.environ["CFAI_HOME"] = tempfile.mkdtemp(prefix="cfai-bench-")
    os.environ.update(CLOUDFLARE_ACCOUNT_ID="0123456789abcdef0123456789abcdef", CLOUDFLARE_API_TOKEN="x")
    from cfai_cli.server import recorder
    from cfai_cli.server.app import create_app
    from cfai_cli.service.batch_executor import BatchExecutor
    from cfai_cli.settings import load_settings
    from cfai_cli.store.keys import KeyPolicy, KeyStore

    for cls, name in ((recorder.UsageRecorder, "interval"), (BatchExecutor, "poll_interval")):
        assert cls.__init__.__kwdefaults__ is not None
        cls.__init__.__kwdefaults__[name] = 3600.0  # nothing on a timer while it counts (keys_instructions.py)
    settings = load_settings()
    app = create_app(settings, transport=httpx.MockTransport(billing))
    body = json.dumps({"model": "@cf/meta/llama-3.1-8b-instruct",
                       "messages": [{"role": "user", "content": "Say hello."}]}).encode()
    heads = {}
    for kind in kinds:
        key, _ = KeyStore(settings.database).create("bench", KeyPolicy(**POLICIES[kind]))
        heads[kind] = [(b"host", b"proxy.test"), (b"authorization", f"Bearer {key}".encode()),
                       (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]

    async def block(headers: list[tuple[bytes, bytes]], n: int) -> None:
        for _ in range(n // concurrency):
            answers = await asyncio.gather(*(call(app, headers, body) for _ in range(concurrency)))
            assert all(status == 200 for status, _ in answers), answers[0]
            await asyncio.sleep(0)  # the client's round trip: the next request comes in another turn of the loop

    out: dict[str, list[list[float]]] = {kind: [] for kind in kinds}
    async with app.router.lifespan_context(app):
        # What a server's first /health starts (server.app's _after_start: the modules loaded in a thread, the
        # batch executor), done before anything is counted: it came WARM_DELAY (1 s) after the start, inside
        # the longer of two callgrind runs only, and counted ~5 M instructions a request more for one of them.
        app.state.warm_up.set()
        while not hasattr(app.state, "batches"):
            await asyncio.sleep(0.01)
        for kind in kinds:
            await block(heads[kind], 64)  # warm-up
        for _ in range(rounds):
            for kind in kinds:
                before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
                await block(heads[kind], requests)
                after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - start
                out[kind].append([after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, wall])
    return out


def cpu(kinds: list[str], requests: int, rounds: int, concurrency: int) -> None:
    runs = asyncio.run(serve(kinds, requests, rounds, concurrency))
    per = {kind: [statistics.median(block[i] for block in blocks) / requests * 1e6 for i in range(3)]
           for kind, blocks in runs.items()}
    print(f"c={concurrency}, {rounds} rounds of {requests} requests a key, medians, µs a request:")
    print(f"{'key':12} {'user':>8} {'system':>8} {'cpu':>8} {'wall':>8}")
    for kind, (user, system, wall) in per.items():
        print(f"{kind:12} {user:8.1f} {system:8.1f} {user + system:8.1f} {wall:8.1f}")
    base = per[kinds[0]]
    for kind in kinds[1:]:
        user, system, wall = (per[kind][i] - base[i] for i in range(3))
        print(f"{'+' + kind:12} {user:8.1f} {system:8.1f} {user + system:8.1f} {wall:8.1f}")


def traced(kind: str, requests: int, concurrency: int) -> dict[str, int]:
    """System calls of a whole run (start-up, warm-up and `requests` requests of `kind`), by name."""
    with tempfile.NamedTemporaryFile(suffix=".strace", delete=False) as out:
        name = out.name
    subprocess.run(["strace", "-c", "-f", "-o", name, sys.executable, __file__, "--serve", kind, str(requests),
                    str(concurrency)], check=True, stdout=subprocess.DEVNULL)
    counts = {m.group(2): int(m.group(1)) for m in
              re.finditer(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", Path(name).read_text(), re.M)}
    os.unlink(name)
    return counts


def strace(kinds: list[str], requests: int, concurrency: int) -> None:
    per: dict[str, dict[str, float]] = {}
    for kind in kinds:
        small, large = traced(kind, requests // 4, concurrency), traced(kind, requests, concurrency)
        extra = requests - requests // 4
        names = (set(small) | set(large)) - {"total"}  # strace's own sum line
        per[kind] = {name: (large.get(name, 0) - small.get(name, 0)) / extra for name in names}
    names = sorted({n for calls in per.values() for n, v in calls.items() if abs(v) >= 0.05},
                   key=lambda n: -max(per[k].get(n, 0) for k in kinds))
    print(f"system calls a request (strace -c -f, {requests // 4} and {requests} requests by difference), "
          f"c={concurrency}:")
    print(f"{'call':14}" + "".join(f"{kind:>12}" for kind in kinds))
    for name in names:
        print(f"{name:14}" + "".join(f"{per[kind].get(name, 0):12.2f}" for kind in kinds))
    print(f"{'all':14}" + "".join(f"{sum(per[kind].values()):12.2f}" for kind in kinds))


def callgrind(kinds: list[str], requests: int, concurrency: int) -> None:
    """Instructions a request (and SQLite's part), callgrind over two run lengths by difference, two at a time."""
    work = Path(tempfile.mkdtemp(prefix="cfai-cg-"))
    small = max(concurrency, requests // 4 // concurrency * concurrency)
    per: dict[str, tuple[float, float]] = {}
    for kind in kinds:
        outs = [work / f"{kind.replace(' ', '_')}.{n}.out" for n in (small, requests)]
        procs = [subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
                                   __file__, "--serve", kind, str(n), str(concurrency)],
                                  env={**os.environ, "PYTHONHASHSEED": "0"},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for n, out in zip((small, requests), outs, strict=True)]
        if any(proc.wait() != 0 for proc in procs):
            sys.exit(f"callgrind failed for {kind}: see {work}")
        (a, a_sql), (b, b_sql) = totals(outs[0]), totals(outs[1])
        per[kind] = ((b - a) / (requests - small), (b_sql - a_sql) / (requests - small))
        print(f"{kind:10} {per[kind][0] / 1e6:6.3f} M instructions a request ({per[kind][1] / 1e6:.3f} M in SQLite)"
              f", c={concurrency}")
    for kind in kinds[1:]:
        added, added_sql = (per[kind][i] - per[kinds[0]][i] for i in (0, 1))
        print(f"{'added':10} {added / 1e6:6.3f} M by {kind} ({added_sql / 1e6:.3f} M in SQLite)")


async def one_kind(kind: str, requests: int, concurrency: int) -> None:
    await serve([kind], requests, 1, concurrency)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        asyncio.run(one_kind(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--kinds", default="no limits,rpm+tpm", help=f"the first the baseline (of: {', '.join(KINDS)})")
    parser.add_argument("--strace", action="store_true", help="count system calls instead of timing")
    parser.add_argument("--callgrind", action="store_true", help="count instructions instead of timing")
    parser.add_argument("--hold", type=float, default=None,
                        help="store.hot's HOLD in the measured process (seconds): callgrind runs a round of 32 "
                             "requests slower than the 10 ms a TPM key's tokens wait for the next admission, so they "
                             "committed on the timer at points that moved from run to run (+0.105 to +0.128 M)")
    options = parser.parse_args()
    if options.hold is not None:
        os.environ["BENCH_HOLD"] = str(options.hold)  # the measured processes' environment
    chosen = [kind.strip() for kind in options.kinds.split(",")]
    if not set(chosen) <= set(KINDS):
        parser.error(f"--kinds: of {', '.join(KINDS)}")
    if options.callgrind:
        callgrind(chosen, options.requests, options.concurrency)
    elif options.strace:
        strace(chosen, options.requests, options.concurrency)
    else:
        cpu(chosen, options.requests, options.rounds, options.concurrency)
