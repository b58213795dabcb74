"""What an rpm+tpm key's admission with its token record costs in instructions, measured alone (callgrind).

A loop of `RateLimiter.admit` for a key with rpm and tpm (limits too high to refuse), then `record_tokens_now` (held for
the next admission, as a c=1 key's record rides natively: `HotPath(hold=60)`, so that no timer commits it alone when a
run is slow), with an `asyncio.sleep(0)` after each as a request's turns of the loop. Run under `valgrind
--tool=callgrind` (`PYTHONHASHSEED=0`) at two round counts; the difference divided by the extra rounds is one round
without the start-up's, less the same loop without the limiter (its sleeps and the loop's own). docs/performance.md,
"Keys with limits round 11" (round 10 measured the same loop, kept out of the repository then).

    python bench/admission_instructions.py                    # ~1 minute: four callgrind runs, two at a time
    python bench/admission_instructions.py --small 100 --large 600 --annotate 25   # and the top functions
    python bench/admission_instructions.py --step 0.2   # a key busy for over a minute: its oldest rows leave
    PYTHONPATH=/other/checkout python bench/admission_instructions.py              # another build
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

WARMUP = 30


async def loop(rounds: int, limited: bool, step: float = 0.001) -> None:
    """The measured process: `rounds` admissions with their token records (or, `limited` False, the bare loop), the
    clock `step` seconds on each round, after a warm-up long enough for the first rows to have left the minute."""
    from cfai_cli.store.hot import HotPath
    from cfai_cli.store.keys import KeyPolicy
    from cfai_cli.store.limits import RateLimiter

    path = Path(tempfile.mkdtemp(prefix="cfai-bench-")) / "state.db"
    limiter = RateLimiter(path, HotPath(path, hold=60))
    policy = KeyPolicy(rpm=10**9, tpm=10**12)
    clock = 1_800_000_000.0
    for _ in range(max(WARMUP, math.ceil(61 / step) if step >= 0.1 else 0) + rounds):
        clock += step
        if limited:
            decision = await limiter.admit("key", policy, now=clock)
            assert decision.allowed
        await asyncio.sleep(0)
        if limited:
            limiter.record_tokens_now("key", 5, now=clock + 0.0005)
        await asyncio.sleep(0)
    limiter.hot.close()


def callgrind(rounds: int, limited: bool, out: Path, step: float) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--dump-instr=no", f"--callgrind-out-file={out}",
         sys.executable, __file__, "--measured", str(rounds), "--step", str(step), *([] if limited else ["--bare"])],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def total(out: Path) -> int:
    match = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M)
    assert match, out
    return int(match.group(1))


def sqlite_part(out: Path) -> int:
    """Instructions in libsqlite3 (self cost), from callgrind_annotate's per-object figures."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", str(out)],
                          capture_output=True, text=True, check=True).stdout
    return sum(int(m.group(1).replace(",", "")) for m in
               re.finditer(r"^\s*([\d,]+) .*\[\S*libsqlite3[^]]*\]$", text, re.M))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=600)
    parser.add_argument("--annotate", type=int, default=0, help="print the N top functions' per-round difference")
    parser.add_argument("--step", type=float, default=0.001,
                        help="seconds between two rounds (0.001: the key's first second; from 0.1 a minute of warm-up "
                             "first, and then a row leaves the minute's window every round, as on a busy key)")
    parser.add_argument("--measured", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measured is not None:
        asyncio.run(loop(args.measured, not args.bare, args.step))
        return
    extra = args.large - args.small
    with tempfile.TemporaryDirectory() as tmp:
        outs = {}
        for limited in (False, True):
            runs = []
            for rounds in (args.small, args.large):
                outs[limited, rounds] = out = Path(tmp) / f"cg.{limited}.{rounds}"
                runs.append(callgrind(rounds, limited, out, args.step))
            for run in runs:
                assert run.wait() == 0, "callgrind run failed"
        bare = (total(outs[False, args.large]) - total(outs[False, args.small])) / extra
        limited_round = (total(outs[True, args.large]) - total(outs[True, args.small])) / extra
        sqlite = (sqlite_part(outs[True, args.large]) - sqlite_part(outs[True, args.small])) / extra
        print(f"bare loop            {bare / 1000:8.1f} k instructions a round")
        print(f"admission + record   {limited_round / 1000:8.1f} k a round")
        print(f"added by the limiter {(limited_round - bare) / 1000:8.1f} k (libsqlite3 {sqlite / 1000:.1f} k)")
        if args.annotate:
            print(f"\nper function, inclusive, a round (large - small) / {extra}:")
            figures = [functions(outs[True, rounds]) for rounds in (args.small, args.large)]
            rows = sorted(((figures[1].get(name, 0) - figures[0].get(name, 0)) / extra, name)
                          for name in figures[1])
            for value, name in sorted(rows, reverse=True)[:args.annotate]:
                print(f"{value / 1000:8.1f} k  {name}")


def functions(out: Path) -> dict[str, int]:
    text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(out)],
                          capture_output=True, text=True, check=True).stdout
    figures: dict[str, int] = {}
    for match in re.finditer(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?\*?\s*(\S+)", text, re.M):
        name = match.group(2)
        figures[name] = figures.get(name, 0) + int(match.group(1).replace(",", ""))
    return figures


if __name__ == "__main__":
    main()
