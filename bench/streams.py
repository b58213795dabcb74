"""Streams through the proxy, build against build: added p50 of a 20-chunk stream at c=1, time to first byte.

Starts two fake Workers AI (bench/fake_upstream.py: one answering at once, one holding a stream's events
after the first for `--gap-ms`) and, for each build, `cfai serve` in front of each (keys on, like run.py).
Then, in rounds, interleaved across builds so that a machine busy with other work hurts them alike:

- **stream c=1**: wrk (else bench/loadgen.py) p50 of a 20-chunk stream, and the proxy's CPU per request;
- **TTFB**: bench/ttfb.py's send-to-first-`data:` time against the gapped fake, one request at a time;
- **idle chat**: the same client's time to a whole non-stream chat answer, idling `--gap-ms` before each send as
  it does while the gapped stream runs: a process that slept for milliseconds on a busy machine runs its next
  request slower (caches and cores taken by others), so this is the figure a stream's TTFB compares with.

Each figure is printed with the same figure measured directly against the fake, and the medians of rounds.

    python bench/streams.py                                  # this build only
    python bench/streams.py --compare /tmp/before            # and the cfai_cli of another checkout
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import ACCOUNT, MODEL, NATIVE_BODY, OPENAI_BODY, Bench, free_port, wait_http  # noqa: E402
from ttfb import ttfb  # noqa: E402


class Build:
    """One build's two proxies (in front of the plain fake and the gapped one) and its key."""

    def __init__(self, bench: Bench, label: str, root: Path, ports: tuple[int, int]) -> None:
        self.label = label
        home = Path(tempfile.mkdtemp(prefix="cfai-streams-"))
        env = {**bench.env, "CFAI_HOME": str(home), "PYTHONPATH": str(root)}
        cfai = [sys.executable, "-m", "cfai_cli"]
        self.key = subprocess.run([*cfai, "keygen", "--name", "bench"], env=env, capture_output=True, text=True,
                                  check=True, cwd=root).stdout.strip()
        self.urls: list[str] = []
        self.pids: list[int] = []
        for up in ports:
            port = free_port()
            # In the build's own directory: `python -m` puts the working directory before PYTHONPATH.
            proc = subprocess.Popen([*cfai, "serve", "--port", str(port), "--max-concurrency", "4096"],
                                    env={**env, "CFAI_API_BASE": f"http://127.0.0.1:{up}/client/v4"}, cwd=root,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            bench.procs.append(proc)
            wait_http(f"http://127.0.0.1:{port}/health")
            self.urls.append(f"http://127.0.0.1:{port}/v1/chat/completions")
            self.pids.append(proc.pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", action="append", default=[], metavar="DIR",
                        help="another checkout whose cfai_cli to measure too (repeatable)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="wrk load per round (default 3)")
    parser.add_argument("--requests", type=int, default=400, help="TTFB requests per round (default 400)")
    parser.add_argument("--gap-ms", type=float, default=5.0, help="the gapped fake's hold (default 5)")
    parser.add_argument("--python-load", action="store_true")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    bench = Bench(argparse.Namespace(python_load=args.python_load, seconds=args.seconds))
    ports = (bench.up_port, free_port())
    try:
        bench.start([sys.executable, str(HERE / "fake_upstream.py"), "--port", str(ports[0])],
                    f"http://127.0.0.1:{ports[0]}/health")
        bench.start([sys.executable, str(HERE / "fake_upstream.py"), "--port", str(ports[1]),
                     "--stream-gap-ms", str(args.gap_ms)], f"http://127.0.0.1:{ports[1]}/health")
        roots = [HERE.parent, *(Path(d).resolve() for d in args.compare)]
        builds = [Build(bench, "this" if i == 0 else str(r), r, ports) for i, r in enumerate(roots)]
        native = json.dumps({**NATIVE_BODY, "stream": True}).encode()
        body = json.dumps({**OPENAI_BODY, "stream": True}).encode()
        direct = [f"http://127.0.0.1:{p}/client/v4/accounts/{ACCOUNT}/ai/run/{MODEL}" for p in ports]
        figures: dict[str, dict[str, list[float]]] = {"direct": {"p50": [], "ttfb": [], "idle": []}}
        figures |= {b.label: {"p50": [], "ttfb": [], "cpu": [], "idle": []} for b in builds}
        pause = args.gap_ms / 1000
        plain_native, plain = json.dumps(NATIVE_BODY).encode(), json.dumps(OPENAI_BODY).encode()
        for _ in range(args.rounds):
            load = bench.load(direct[0], {**NATIVE_BODY, "stream": True}, {}, 1)
            figures["direct"]["p50"].append(load.p50)
            figures["direct"]["ttfb"].append(statistics.median(ttfb(direct[1], native, {}, requests=args.requests))
                                             * 1000)
            figures["direct"]["idle"].append(statistics.median(
                ttfb(direct[0], plain_native, {}, requests=args.requests // 2, warmup=10, pause=pause)) * 1000)
            for b in builds:
                auth = {"Authorization": f"Bearer {b.key}"}
                load = bench.load(b.urls[0], {**OPENAI_BODY, "stream": True}, auth, 1, pid=b.pids[0])
                figures[b.label]["p50"].append(load.p50)
                figures[b.label]["cpu"].append(load.cpu_us or 0.0)
                figures[b.label]["ttfb"].append(statistics.median(ttfb(b.urls[1], body, auth,
                                                                       requests=args.requests)) * 1000)
                figures[b.label]["idle"].append(statistics.median(
                    ttfb(b.urls[0], plain, auth, requests=args.requests // 2, warmup=10, pause=pause)) * 1000)
    finally:
        bench.close()
    print(f"{os.cpu_count()} CPUs; {args.rounds} rounds interleaved; medians of rounds "
          f"(rounds in brackets); TTFB against a fake holding events after the first for {args.gap_ms:g} ms\n")
    d = {k: statistics.median(v) for k, v in figures["direct"].items()}
    print("| build | stream c=1 p50 | added | proxy CPU per stream | TTFB p50 | TTFB added | idle chat | added |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| direct | {d['p50']:.2f} ms | | | {d['ttfb']:.3f} ms | | {d['idle']:.3f} ms | |")
    for b in builds:
        f = {k: statistics.median(v) for k, v in figures[b.label].items()}
        print(f"| {b.label} | {f['p50']:.2f} ms | +{f['p50'] - d['p50']:.2f} ms | {f['cpu']:.0f} µs | "
              f"{f['ttfb']:.3f} ms | +{f['ttfb'] - d['ttfb']:.3f} ms | {f['idle']:.3f} ms | "
              f"+{f['idle'] - d['idle']:.3f} ms |")
    print("\nrounds: " + json.dumps({k: {m: [round(x, 3) for x in v] for m, v in f.items()}
                                   for k, f in figures.items()}))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
