"""A fresh `cfai serve` over many images (or `--embeddings`) requests: its peak RSS above idle after each, and its
page faults and CPU (user, system) per request, read from /proc (Linux). What `bench/payloads.py` cannot show in 7
requests: whether the peak creeps from request to request (blocks kept in a heap never trimmed) or the heap is trimmed
and faulted in again every request (issue 25, round 8: server.heap).

    python bench/payload_heap.py --requests 30                         # this build
    python bench/payload_heap.py --root /path/to/other                   # another checkout's `cfai serve`
    python bench/payload_heap.py --embeddings --requests 10              # 2,048 float embeddings instead
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from payloads import EMBED_MODEL, IMAGE_MODEL, TEXTS, Proxy, post, status  # noqa: E402
from run import Bench  # noqa: E402


def faults_and_cpu(pid: int) -> tuple[int, float, float]:
    """(minor page faults, user seconds, system seconds) of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[7]), int(fields[11]) / tick, int(fields[12]) / tick


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--root", type=Path, default=HERE.parent, help="the checkout whose cfai serve to run")
    parser.add_argument("--embeddings", action="store_true", help="2,048 float embeddings (32.7 MB read) instead")
    args = parser.parse_args()
    bench = Bench(argparse.Namespace(python_load=False, seconds=1.0))
    try:
        bench.start([sys.executable, str(HERE / "fake_upstream.py"), "--port", str(bench.up_port)],
                    f"http://127.0.0.1:{bench.up_port}/health")
        proxy = Proxy(bench, args.root.resolve())
        pid = proxy.proc.pid
        if args.embeddings:
            path, what = "embeddings", "embeddings 2,048 float (32.7 MB read)"
            body: dict[str, object] = {"model": EMBED_MODEL, "input": TEXTS, "encoding_format": "float"}
            post(f"{proxy.base}/{path}", {**body, "input": TEXTS[:1]}, proxy.headers)  # modules imported: idle
        else:
            path, what = "images/generations", "images n=4 (5.3 MB read)"
            body = {"model": IMAGE_MODEL, "prompt": "a fox", "n": 4, "response_format": "b64_json"}
            post(f"{proxy.base}/{path}", {**body, "n": 1}, proxy.headers)  # modules imported: idle
        idle = status(pid, "VmRSS")
        before = faults_and_cpu(pid)
        peaks = []
        for _ in range(args.requests):
            post(f"{proxy.base}/{path}", body, proxy.headers)
            peaks.append((status(pid, "VmHWM") - idle) / 1e6)
        after = faults_and_cpu(pid)
    finally:
        bench.close()
    n = args.requests
    print(f"{args.root}: {what}, {n} requests; peak RSS above idle after each (MB):")
    print(" ".join(f"{peak:.1f}" for peak in peaks))
    faults, user, system = (after[i] - before[i] for i in range(3))
    print(f"per request: {faults / n:.0f} page faults, user {user / n * 1000:.1f} ms, "
          f"system {system / n * 1000:.1f} ms")


if __name__ == "__main__":
    main()
