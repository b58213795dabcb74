"""What a plain chat at c=1 costs `cfai serve` beyond its instructions: system calls, and each thread's wake-ups.

Starts bench/fake_upstream.py and a real `cfai serve` (from the current directory, as bench/run.py does: run it
from the checkout to measure, with PYTHONPATH on it), with a key without limits, then sends non-stream chats one
at a time over one keep-alive connection (a blocking socket: the next request leaves when the answer has been
read, c=1 as wrk's one connection). Two run lengths, by difference (what attaching strace costs cancels out):

- system calls a request, by name (`strace -c -f -p`, every thread of the server);
- context switches a request, voluntary (a thread waited: a wake-up) and not, thread by thread (by name, from
  /proc/PID/task/*/status), and which threads ran at all;
- the same for the fake Workers AI, the other process every request passes through (`--upstream`), and for
  bench/ttfb_floor.py's bare uvicorn + Starlette app answering a fixed JSON body itself (`--bare`): what any
  server on the stack costs.

    python bench/serve_syscalls.py [--small 300] [--large 1500] [--bare] [--upstream]
    python bench/serve_syscalls.py --stream      # a streamed chat instead (the fake's 20 events, read at once)
    python bench/serve_syscalls.py --callgrind 1000     # instructions a request of the server process
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import OPENAI_BODY, Bench, free_port, wait_http  # noqa: E402
from ttfb_floor import RELAY, wait_answer  # noqa: E402


def switches(pid: int) -> Counter[str]:
    """Context switches and CPU ticks so far, thread by thread ('main' the event loop's, the others by thread
    id: Python 3.11 does not name its threads for the kernel), each as 'thread v' (voluntary: the thread waited,
    so each is a wake-up), 'thread n' (not: preempted), and 'thread cpu user' and 'thread cpu system' (clock ticks)."""
    out: Counter[str] = Counter()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
            stat = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a thread that ended meanwhile
        name = "main" if task.name == str(pid) else f"thread {task.name}"
        out[f"{name} v"] += int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
        out[f"{name} n"] += int(re.search(r"^nonvoluntary_ctxt_switches:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
        out[f"{name} cpu user"] += int(stat[11])
        out[f"{name} cpu system"] += int(stat[12])
    return out


class Client:
    stream = False  # --stream: `"stream": true`, a chunked SSE answer read to its last chunk

    def __init__(self, port: int, key: str) -> None:
        body = json.dumps({**OPENAI_BODY, "stream": True} if self.stream else OPENAI_BODY).encode()
        self.request = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
                        f"authorization: Bearer {key}\r\ncontent-type: application/json\r\n"
                        f"content-length: {len(body)}\r\n\r\n").encode() + body
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def read(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the proxy closed the connection (idle past its keep-alive?)")
        self.buf += data

    def chat(self) -> None:
        self.sock.sendall(self.request)
        while b"\r\n\r\n" not in self.buf:
            self.read()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
        if self.stream:  # chunked: to the last chunk (at c=1 nothing follows it)
            self.buf = rest
            while not self.buf.endswith(b"\r\n0\r\n\r\n"):
                self.read()
            self.buf = b""
            return
        length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        self.buf = rest
        while len(self.buf) < length:
            self.read()
        self.buf = self.buf[length:]

    def run(self, n: int) -> None:
        for _ in range(n):
            self.chat()


def measure(client: Client, pid: int, n: int) -> tuple[Counter[str], Counter[str]]:
    """System calls of `pid` over `n` chats under strace, then its context switches over `n` more without."""
    before = switches(pid)
    client.run(n)
    after = switches(pid)
    with tempfile.NamedTemporaryFile(suffix=".strace", delete=False) as out:
        name = out.name
    strace = subprocess.Popen(["strace", "-c", "-f", "-p", str(pid), "-o", name], stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # attached
    client.run(n)
    strace.send_signal(signal.SIGINT)
    strace.wait()
    calls = Counter({m.group(2): int(m.group(1)) for m in re.finditer(
        r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", Path(name).read_text(), re.M)})
    os.unlink(name)
    calls.pop("total", None)
    return calls, after - before


def per_request(small: tuple[Counter[str], Counter[str]], large: tuple[Counter[str], Counter[str]],
                extra: int) -> tuple[dict[str, float], dict[str, float]]:
    out = []
    for i in (0, 1):
        names = set(small[i]) | set(large[i])
        out.append({k: (large[i][k] - small[i][k]) / extra for k in names})
    return out[0], out[1]


def show(label: str, calls: dict[str, float], ctx: dict[str, float]) -> None:
    print(f"{label}: system calls a request {sum(calls.values()):.2f}")
    for k, v in sorted(calls.items(), key=lambda kv: -kv[1]):
        if abs(v) >= 0.05:
            print(f"  {k:18} {v:7.2f}")
    tick = 1e6 / os.sysconf("SC_CLK_TCK")
    print(f"{label}: context switches a request (v voluntary, n not), CPU µs a request (in ticks of {tick:.0f} µs)")
    for k, v in sorted(ctx.items()):
        if " cpu " in k and abs(v) > 0:
            print(f"  {k:28} {v * tick:7.1f} µs")
        elif abs(v) >= 0.02:
            print(f"  {k:28} {v:7.2f}")


def callgrind(bench: Bench, key: str, requests: int) -> None:
    """Instructions a request of the whole server process (every thread; uvicorn's protocol and the kernel's
    side excluded, the rest included), `callgrind_control --zero` and `--dump` around `requests` chats."""
    port = free_port()
    out = Path(tempfile.mkdtemp(prefix="cfai-cg-")) / "serve.out"
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--dump-instr=no", f"--callgrind-out-file={out}",
                             *bench.cfai, "serve", "--port", str(port), "--max-concurrency", "4096"],
                            env={**bench.env, "PYTHONHASHSEED": "0"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    bench.procs.append(proc)
    wait_http(f"http://127.0.0.1:{port}/health", 120)
    Client(port, key).run(300)
    time.sleep(2)  # the first requests' timers and the server's warm-up done
    client = Client(port, key)
    client.run(50)
    subprocess.run(["callgrind_control", "--zero", str(proc.pid)], check=True, stdout=subprocess.DEVNULL)
    client.run(requests)
    subprocess.run(["callgrind_control", "--dump=measured", str(proc.pid)], check=True, stdout=subprocess.DEVNULL)
    summary = next(int(line.split()[1]) for line in Path(f"{out}.1").read_text().splitlines()
                   if line.startswith("summary:"))
    print(f"cfai serve: {summary / requests / 1e6:.3f} M instructions a request (callgrind, {requests} chats)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=300)
    parser.add_argument("--large", type=int, default=1500)
    parser.add_argument("--upstream", action="store_true", help="also count the fake Workers AI's")
    parser.add_argument("--bare", action="store_true",
                        help="also count bench/ttfb_floor.py's bare uvicorn + Starlette app answering itself")
    parser.add_argument("--stream", action="store_true", help="streamed chats instead of plain ones")
    parser.add_argument("--callgrind", type=int, metavar="N", help="instead: instructions a request over N chats")
    args = parser.parse_args()
    Client.stream = args.stream
    bench = Bench(argparse.Namespace(python_load=True, seconds=1.0, workers=1, keys_only=False))
    try:
        up = bench.start([sys.executable, str(HERE / "fake_upstream.py"), "--port", str(bench.up_port)],
                         f"http://127.0.0.1:{bench.up_port}/health")
        key = bench.keygen()
        if args.callgrind:
            callgrind(bench, key, args.callgrind)
            return
        proxy, port = bench.proxy(no_auth=False)
        targets = [(proxy.pid, port, "cfai serve")]
        if args.bare:
            bare = free_port()
            env = {**os.environ, "FLOOR_MODE": "bare", "FLOOR_PORT": str(bare), "FLOOR_UPSTREAM_PORT": "0",
                   "FLOOR_UPSTREAM": "http://127.0.0.1:0"}
            proc = subprocess.Popen([sys.executable, "-c", RELAY], env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            bench.procs.append(proc)
            wait_answer(f"http://127.0.0.1:{bare}/", b"{}")
            targets.append((proc.pid, bare, "bare uvicorn + Starlette"))
        if args.upstream:
            targets.append((up.pid, port, "fake Workers AI (under cfai serve)"))
        for pid, target, label in targets:
            client = Client(target, key)
            client.run(1000)  # warm-up
            time.sleep(1.5)  # the first request's timers (the usage writer's flush, the warm-up) done
            client = Client(target, key)  # a fresh connection: the idle one may be past its keep-alive
            client.run(200)
            small = measure(client, pid, args.small)
            large = measure(client, pid, args.large)
            show(label, *per_request(small, large, args.large - args.small))
    finally:
        bench.close()


if __name__ == "__main__":
    main()
