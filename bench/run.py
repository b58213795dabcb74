"""The cfai benchmark: direct fake upstream vs through `cfai serve`, side by side, with ratios.

Starts `bench/fake_upstream.py` (zero-latency Workers AI) and a real `cfai serve` process pointed at it
(CFAI_API_BASE, a key from `cfai keygen` in a temporary CFAI_HOME), then measures with wrk when it is
installed (else bench/loadgen.py): p50/p99 at c=1 and c=32 and req/s, the same for a 20-chunk stream
and its time to first event (bench/ttfb.py), RSS after load and after 20k more requests, and `cfai`
start-up times (hyperfine when installed).
Then what a key's limits cost: chat at c=1 and c=32 with a key without limits, one with `--rpm`/`--tpm` (set
high enough never to refuse during the run) and one with a budget, in interleaved rounds on one proxy
process, with each key's ratio to the key without limits (medians of the rounds).

    python bench/run.py                  # ~4 minutes; --seconds 3 for a quicker, noisier run
    python bench/run.py --no-auth        # also measure the proxy without key authentication
    python bench/run.py --workers 2      # the proxy with two uvicorn workers
    python bench/run.py --console        # also measure the proxy with stdout on a terminal (its line per request)
    python bench/run.py --keys-only      # only the keys with and without limits (~1 minute with --seconds 3)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import loadgen  # noqa: E402
from ttfb import ttfb  # noqa: E402

ACCOUNT = "0123456789abcdef0123456789abcdef"
MODEL = "@cf/meta/llama-3.1-8b-instruct-fast"
MESSAGES = [{"role": "user", "content": "Say hello."}]
OPENAI_BODY = {"model": "gpt-4o-mini", "messages": MESSAGES}
NATIVE_BODY = {"messages": MESSAGES, "max_tokens": 4096}


@dataclass
class Load:
    p50: float  # ms
    p99: float  # ms
    rps: float
    requests: int
    errors: int
    overhead: float | None = None  # mean x-cfai-overhead-ms: the proxy's own time, by its own account
    cpu_us: float | None = None  # the proxy's CPU time per request (user + system, workers included)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # any answer means it is listening
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up") from None
            time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process and its children (uvicorn workers) have used so far. Unlike
    req/s, it hardly moves when other work shares the machine, so it compares builds measured apart."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    ticks = 0
    for p in pids:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn workers), in MB."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


# ---- load generation --------------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * _UNITS[match.group(2)]


def _lua(body: bytes, headers: dict[str, str], stop_after: int | None) -> str:
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(body.decode())}",
             'wrk.headers["Content-Type"] = "application/json"']
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    # The mean of the proxy's own x-cfai-overhead-ms header, gathered from every answer.
    lines += ["ov_sum, ov_n, n = 0, 0, 0", "local threads = {}",
              "function setup(thread) table.insert(threads, thread) end",
              "function response(status, headers, body)", "  n = n + 1",
              '  local v = headers["x-cfai-overhead-ms"]',
              "  if v then ov_sum = ov_sum + tonumber(v); ov_n = ov_n + 1 end"]
    if stop_after:
        lines += [f"  if n >= {stop_after} then wrk.thread:stop() end"]
    lines += ["end", "function done(summary, latency, requests)", "  local s, c = 0, 0",
              '  for _, t in ipairs(threads) do s = s + t:get("ov_sum"); c = c + t:get("ov_n") end',
              '  if c > 0 then io.write(string.format("OVERHEAD_MEAN %.4f\\n", s / c)) end', "end"]
    return "\n".join(lines) + "\n"


def wrk(url: str, body: bytes, headers: dict[str, str], *, connections: int, seconds: float,
        stop_after: int | None = None) -> Load:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_lua(body, headers, stop_after))
    try:
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", script.name,
                              url], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    dist = dict(re.findall(r"^\s+(\d+)%\s+(\S+)\s*$", out, re.M))
    if "99" not in dist:
        raise RuntimeError(f"wrk measured nothing:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    overhead = float(m.group(1)) if (m := re.search(r"OVERHEAD_MEAN ([\d.]+)", out)) else None
    return Load(_wrk_ms(dist["50"]), _wrk_ms(dist["99"]), rps, requests, errors, overhead)


def python_load(url: str, body: bytes, headers: dict[str, str], *, connections: int, seconds: float,
                stop_after: int | None = None) -> Load:
    result = loadgen.run_sync(url, body, connections=connections, seconds=seconds, headers=headers)
    overhead = result.overhead_ms
    return Load(result.pct(50), result.pct(99), result.rps, len(result.latencies), result.errors,
                sum(overhead) / len(overhead) if overhead else None)


# ---- the run ----------------------------------------------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.use_wrk = shutil.which("wrk") is not None and not args.python_load
        self.home = Path(tempfile.mkdtemp(prefix="cfai-bench-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.up_port = free_port()
        self.env = {**os.environ, "CFAI_HOME": str(self.home), "CLOUDFLARE_ACCOUNT_ID": ACCOUNT,
                    "CLOUDFLARE_API_TOKEN": "bench-token", "CFAI_API_BASE": f"http://127.0.0.1:{self.up_port}/client/v4",
                    "NO_COLOR": "1"}
        self.cfai = [sys.executable, "-m", "cfai_cli"]

    def start(self, cmd: list[str], health: str, *, terminal: bool = False) -> subprocess.Popen[bytes]:
        stdout: int = subprocess.DEVNULL
        if terminal:  # a pseudo-terminal, read as fast as a terminal emulator would
            import pty
            import threading

            master, stdout = pty.openpty()
            threading.Thread(target=_drain, args=(master,), daemon=True).start()
        proc = subprocess.Popen(cmd, env=self.env, stdout=stdout, stderr=subprocess.DEVNULL)
        if terminal:
            os.close(stdout)
        self.procs.append(proc)
        wait_http(health)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        self.procs.remove(proc)

    def close(self) -> None:
        for proc in list(self.procs):
            self.stop(proc)
        shutil.rmtree(self.home, ignore_errors=True)

    def load(self, url: str, body: Mapping[str, object], headers: dict[str, str], connections: int,
             seconds: float | None = None, stop_after: int | None = None, pid: int | None = None) -> Load:
        run = wrk if self.use_wrk else python_load
        data = json.dumps(body).encode()
        secs = seconds or self.args.seconds
        run(url, data, headers, connections=connections, seconds=min(1.0, secs))  # warm-up
        before = cpu_seconds(pid) if pid else 0.0
        load = run(url, data, headers, connections=connections, seconds=secs, stop_after=stop_after)
        if pid and load.requests:
            load.cpu_us = (cpu_seconds(pid) - before) / load.requests * 1e6
        return load

    def proxy(self, *, no_auth: bool, terminal: bool = False) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        cmd = [*self.cfai, "serve", "--port", str(port), "--max-concurrency", "4096"]
        if no_auth:
            cmd.append("--no-auth")
        if self.args.workers > 1:
            cmd += ["--workers", str(self.args.workers)]
        return self.start(cmd, f"http://127.0.0.1:{port}/health", terminal=terminal), port

    def keygen(self, *flags: str) -> str:
        return subprocess.run([*self.cfai, "keygen", "--name", "bench", *flags], env=self.env, capture_output=True,
                              text=True, check=True).stdout.strip()

    def measure(self) -> dict[str, object]:
        results: dict[str, object] = {"load_generator": "wrk" if self.use_wrk else "python (bench/loadgen.py)"}
        self.start([sys.executable, str(HERE / "fake_upstream.py"), "--port", str(self.up_port)],
                   f"http://127.0.0.1:{self.up_port}/health")
        key = self.keygen()
        if self.args.keys_only:
            results["keys"] = self.keys(key)
            return results
        direct = f"http://127.0.0.1:{self.up_port}/client/v4/accounts/{ACCOUNT}/ai/run/{MODEL}"
        scenarios: dict[str, tuple[Mapping[str, object], Mapping[str, object], int]] = {
            "chat c=1": (NATIVE_BODY, OPENAI_BODY, 1),
            "chat c=32": (NATIVE_BODY, OPENAI_BODY, 32),
            "stream c=1": ({**NATIVE_BODY, "stream": True}, {**OPENAI_BODY, "stream": True}, 1),
            "stream c=32": ({**NATIVE_BODY, "stream": True}, {**OPENAI_BODY, "stream": True}, 32),
        }
        for name, (native, _, c) in scenarios.items():
            results[f"direct {name}"] = self.load(direct, native, {}, c)
        variants = [("cfai", False)] + ([("cfai --no-auth", True)] if self.args.no_auth else [])
        variants += [("cfai on a terminal", False)] if self.args.console else []
        for label, no_auth in variants:
            proc, port = self.proxy(no_auth=no_auth, terminal=label == "cfai on a terminal")
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            headers = {} if no_auth else {"Authorization": f"Bearer {key}"}
            for name, (_, body, c) in scenarios.items():
                results[f"{label} {name}"] = self.load(url, body, headers, c, pid=proc.pid)
            if label == "cfai":  # time to the first event of a stream, one request at a time (bench/ttfb.py)
                stream = json.dumps({**OPENAI_BODY, "stream": True}).encode()
                native = json.dumps({**NATIVE_BODY, "stream": True}).encode()
                results["ttfb direct"] = statistics.median(ttfb(direct, native, {}, requests=500)) * 1000
                results["ttfb cfai"] = statistics.median(ttfb(url, stream, headers, requests=500)) * 1000
            if label == "cfai":
                results["rss after load"] = rss_mb(proc.pid)
                extra = self.load(url, OPENAI_BODY, headers, 32, seconds=120, stop_after=20000)
                results["rss after 20k more"] = rss_mb(proc.pid)
                results["20k more requests"] = extra.requests
            self.stop(proc)
        results["keys"] = self.keys(key)
        results["startup"] = self.startup()
        return results

    def keys(self, plain: str) -> dict[str, dict[str, Load]]:
        """Chat through one proxy with a key without limits, one with rpm+tpm and one with a budget, the three
        alternating in each round so that the machine's other work falls on all of them alike."""
        keys = {"no limits": plain,
                "rpm+tpm": self.keygen("--rpm", "1000000000", "--tpm", "1000000000000"),
                "budget": self.keygen("--budget-neurons-per-day", "1000000000")}
        rounds: dict[str, dict[str, list[Load]]] = {name: {"c=1": [], "c=32": []} for name in keys}
        proc, port = self.proxy(no_auth=False)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        for _ in range(self.args.rounds):
            for name, key in keys.items():
                for label, c in (("c=1", 1), ("c=32", 32)):
                    load = self.load(url, OPENAI_BODY, {"Authorization": f"Bearer {key}"}, c, pid=proc.pid)
                    if load.errors:
                        raise RuntimeError(f"{name} {label}: {load.errors} answers were not 2xx")
                    rounds[name][label].append(load)
        self.stop(proc)
        return {name: {label: median_load(loads) for label, loads in by_c.items()} for name, by_c in rounds.items()}

    def startup(self) -> dict[str, float]:
        script = shutil.which("cfai", path=str(Path(sys.executable).parent)) or shutil.which("cfai")
        base = [script] if script else self.cfai
        commands = {"python -c pass (floor)": [sys.executable, "-c", "pass"], "cfai --version": [*base, "--version"],
                    "cfai --help": [*base, "--help"], "cfai chat --help": [*base, "chat", "--help"],
                    "cfai chat --offline hi": [*base, "chat", "--offline", "hi"]}
        out: dict[str, float] = {}
        for label, cmd in commands.items():
            if shutil.which("hyperfine"):
                with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
                    export = f.name
                subprocess.run(["hyperfine", "-N", "--warmup", "3", "--runs", str(self.args.runs), "--export-json",
                                export, " ".join(_quote(c) for c in cmd)], env=self.env, capture_output=True,
                               check=True)
                data = json.loads(Path(export).read_text())["results"][0]
                os.unlink(export)
                out[label] = data["median"] * 1000
            else:
                times = []
                for _ in range(self.args.runs):
                    start = time.perf_counter()
                    subprocess.run(cmd, env=self.env, capture_output=True, check=True)
                    times.append(time.perf_counter() - start)
                out[label] = sorted(times)[len(times) // 2] * 1000
        return out


def _drain(fd: int) -> None:
    with contextlib.suppress(OSError):
        while os.read(fd, 65536):
            pass


def median_load(loads: list[Load]) -> Load:
    """Each figure's median over rounds."""
    def mid(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None
    return Load(p50=statistics.median(x.p50 for x in loads), p99=statistics.median(x.p99 for x in loads),
                rps=statistics.median(x.rps for x in loads), requests=sum(x.requests for x in loads),
                errors=sum(x.errors for x in loads), overhead=mid([x.overhead for x in loads]),
                cpu_us=mid([x.cpu_us for x in loads]))


def keys_table(keys: dict[str, dict[str, Load]], rounds: int) -> str:
    """A key with limits beside the key without: issue 25's target is >= 0.90x its c=32 req/s and <= +0.1 ms
    at the c=1 p50."""
    base = keys["no limits"]
    rows = [f"chat through one proxy, by key (medians of {rounds} interleaved rounds):", "",
            "| key | c=1 p50 | added p50 | c=32 req/s | ratio | CPU per request (c=32) | added CPU |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, by_c in keys.items():
        one, many = by_c["c=1"], by_c["c=32"]
        cpu, base_cpu = many.cpu_us, base["c=32"].cpu_us
        added_cpu = f"{cpu - base_cpu:+.0f} µs" if cpu is not None and base_cpu is not None else ""
        rows.append(f"| {name} | {one.p50:.3f} ms | {one.p50 - base['c=1'].p50:+.3f} ms | {many.rps:,.0f} | "
                    f"{many.rps / base['c=32'].rps:.2f}× | {'' if cpu is None else f'{cpu:.0f} µs'} | {added_cpu} |")
    return "\n".join(rows)


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


def table(results: dict[str, object], variants: list[str]) -> str:
    rows = ["| scenario | metric | direct upstream | " + " | ".join(variants) + " | ratio | added |",
            "| --- | --- | ---: | " + " | ".join("---:" for _ in variants) + " | ---: | ---: |"]
    for name in ("chat c=1", "chat c=32", "stream c=1", "stream c=32"):
        d = results[f"direct {name}"]
        assert isinstance(d, Load)
        through = [results[f"{v} {name}"] for v in variants]
        for metric, unit in (("p50", "ms"), ("p99", "ms"), ("rps", "req/s")):
            base = getattr(d, metric)
            vals = [getattr(t, metric) for t in through]
            first = vals[0]
            ratio = first / base if base else float("nan")
            added = f"{first - base:+.2f} {unit}" if unit == "ms" else ""
            fmt = "{:.2f}" if unit == "ms" else "{:,.0f}"
            rows.append(f"| {name} | {metric} ({unit}) | {fmt.format(base)} | "
                        + " | ".join(fmt.format(v) for v in vals) + f" | {ratio:.2f}× | {added} |")
        cpu = [getattr(t, "cpu_us", None) for t in through]
        if any(v is not None for v in cpu):
            rows.append(f"| {name} | proxy CPU per request (µs) | | "
                        + " | ".join("" if v is None else f"{v:.0f}" for v in cpu) + " | | |")
        own = [getattr(t, "overhead", None) for t in through]
        if any(v is not None for v in own):
            rows.append(f"| {name} | x-cfai-overhead-ms (mean) | | "
                        + " | ".join("" if v is None else f"{v:.2f}" for v in own) + " | | |")
    if "ttfb cfai" in results:
        d, t = results["ttfb direct"], results["ttfb cfai"]
        assert isinstance(d, float) and isinstance(t, float)
        rows.append(f"| stream c=1 | time to first event, p50 (ms) | {d:.2f} | {t:.2f} | " + " | " * (len(variants) - 1)
                    + f"{t / d:.2f}× | {t - d:+.2f} ms |")
    rows.append(f"| memory | RSS after load | | {results['rss after load']:.1f} MB | " + " | " * (len(variants) - 1)
                + " |")
    rows.append(f"| memory | RSS after {results['20k more requests']:,} more | | "
                f"{results['rss after 20k more']:.1f} MB | " + " | " * (len(variants) - 1) + " |")
    startup = results["startup"]
    assert isinstance(startup, dict)
    lines = ["", "| command | median wall time |", "| --- | ---: |"]
    lines += [f"| `{label}` | {ms:.0f} ms |" for label, ms in startup.items()]
    return "\n".join(rows + lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measured load (default 5)")
    parser.add_argument("--no-auth", action="store_true", help="also measure `cfai serve --no-auth`")
    parser.add_argument("--console", action="store_true", help="also measure it with stdout on a terminal")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers for the proxy (default 1)")
    parser.add_argument("--runs", type=int, default=20, help="runs per start-up timing (default 20)")
    parser.add_argument("--python-load", action="store_true", help="use bench/loadgen.py even if wrk is installed")
    parser.add_argument("--keys-only", action="store_true", help="measure only keys with and without limits")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the keys' loads (default 3)")
    parser.add_argument("--json", metavar="FILE", help="also write the raw figures as JSON")
    args = parser.parse_args()
    bench = Bench(args)
    try:
        results = bench.measure()
    finally:
        bench.close()
    variants = ["cfai"] + (["cfai --no-auth"] if args.no_auth else [])
    variants += ["cfai on a terminal"] if args.console else []
    print(f"load generator: {results['load_generator']}; {os.cpu_count()} CPUs; "
          f"proxy workers: {args.workers}; {args.seconds:g} s per load\n")
    keys = results["keys"]
    assert isinstance(keys, dict)
    if not args.keys_only:
        print(table(results, variants) + "\n")
    print(keys_table(keys, args.rounds))
    overheads = {k: v.overhead for k, v in results.items() if isinstance(v, Load) and v.overhead is not None}
    if overheads:
        print("\nx-cfai-overhead-ms (mean): " + ", ".join(f"{k} {v:.2f}" for k, v in overheads.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {k: (v.__dict__ if isinstance(v, Load) else v) for k, v in results.items()}, indent=2,
            default=lambda load: load.__dict__))


if __name__ == "__main__":
    main()
