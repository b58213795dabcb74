"""What `cfai serve` executes before its first 200 on /health, in instructions (callgrind) or a cProfile.

The wall time to ready moves ±50 % on a shared 2-core machine; the instructions a process executes until it
answers do not. The measured process is `cfai serve --port N` (the console script's own path: entry.main,
with a key from `cfai keygen`, so config, keys and routes are all loaded and checked) plus a thread that polls
/health every few ms from inside it and ends the process (`os._exit`) at the first 200, so nothing after
readiness is counted: not the warm-up, not the shutdown. The poller's own instructions are left out (callgrind
counts each thread apart): how many polls it makes depends on how long the run takes, which moves with the load.

    python bench/ready_instructions.py                     # callgrind, 3 runs, median (~1 minute)
    python bench/ready_instructions.py --before /tmp/b     # and a checkout of another build, interleaved
    python bench/ready_instructions.py --profile out.prof  # a cProfile of the main thread instead

Another build is run with this interpreter and `PYTHONPATH=<its checkout>`, so both see the same libraries.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from startup import fake_env, free_port  # noqa: E402

# The measured process: the console script's main() and a thread that polls /health from inside it and ends the
# process at the first 200. Run with `python -c`, so nothing but what it needs is imported besides cfai's own. The
# poller sleeps `interval` between polls: 50 ms under callgrind (which runs ~50x slower; the server idles once it
# listens, so a late poll adds no instructions but the poller's few), 3 ms for a profile.
CHILD = """
import os, socket, sys, threading, time
port, interval, profile = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]

def answered():
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"GET /health HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n\\r\\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False

profiler = None
if profile:
    import cProfile
    profiler = cProfile.Profile()

def poll():
    while not answered():
        time.sleep(interval)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    os._exit(0)

threading.Thread(target=poll, daemon=True).start()
sys.argv = ["cfai", "serve", "--port", str(port)]
if profiler is not None:
    profiler.enable()
from cfai_cli.cli.entry import main
main()
os._exit(1)
"""


def run(checkout: str | None, env: dict[str, str], out: Path | None, profile: str | None) -> None:
    port = free_port()
    interval = "0.05" if out is not None else "0.003"
    cmd = [sys.executable, "-c", CHILD, str(port), interval, profile or ""]
    if out is not None:  # a file per thread (out-01, out-02, ...): the poller's (the second thread) is left out
        cmd = ["valgrind", "--tool=callgrind", "--separate-threads=yes", f"--callgrind-out-file={out}", *cmd]
    env = {**env, "PYTHONHASHSEED": "0"}
    if checkout:
        env["PYTHONPATH"] = checkout
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600,
                          cwd=env["CFAI_HOME"])
    if done.returncode != 0:
        raise RuntimeError(f"cfai serve did not get to its first /health 200: {done.stderr.decode()[-2000:]}")


def instructions(out: Path) -> int:
    """Every thread's instructions but the poller's: its polls depend on how long the run takes, which moves
    with the machine's load (tens of millions of instructions at a load average of 10-18)."""
    total = 0
    for part in out.parent.glob(f"{out.name}-*"):
        if part.name.endswith("-02"):  # the poller: the first thread the measured process starts
            continue
        text = part.read_bytes()
        match = re.search(rb"^summary: (\d+)", text, re.MULTILINE) or re.search(rb"^totals: (\d+)", text,
                                                                                re.MULTILINE)
        assert match, part
        total += int(match.group(1))
    assert total, out
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="callgrind runs per build (median)")
    parser.add_argument("--before", help="a checkout of another build, run with PYTHONPATH")
    parser.add_argument("--profile", help="write a cProfile of the main thread to this file instead")
    args = parser.parse_args()
    builds = {"this build": None, **({f"before ({args.before})": args.before} if args.before else {})}
    with tempfile.TemporaryDirectory(prefix="cfai-ready-") as home:
        env = fake_env(home, 9)  # nothing is asked of Workers AI before the first /health 200
        subprocess.run([sys.executable, "-m", "cfai_cli", "keygen"], env=env, check=True, capture_output=True,
                       cwd=home)
        run(None, env, None, None)  # writes the bytecode caches
        if args.before:
            run(args.before, env, None, None)
        if args.profile:
            run(None, env, None, args.profile)
            print(f"wrote {args.profile}")
            return
        counts: dict[str, list[int]] = {label: [] for label in builds}
        for i in range(args.runs):  # interleaved
            for label, checkout in builds.items():
                out = Path(home) / f"callgrind.{i}.{len(counts[label])}.{abs(hash(label))}"
                run(checkout, env, out, None)
                counts[label].append(instructions(out))
    for label, values in counts.items():
        shown = ", ".join(f"{v / 1e6:,.0f}" for v in values)
        print(f"{label}: {statistics.median(values) / 1e6:,.0f} M instructions to the first /health 200 "
              f"(runs: {shown})")


if __name__ == "__main__":
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    main()
