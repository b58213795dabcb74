"""How fast cfai answers from a cold start: one-shot CLI commands and `cfai serve`'s time to ready.

Starts `bench/fake_upstream.py` (zero-latency Workers AI, plus an OpenAI-compatible `/v1/chat/completions`),
then, in one hyperfine run (`-N --warmup 3`, medians): `cfai --help`, `cfai chat "hi"` against the fake (a
fake token and account, CFAI_API_BASE), `cfai chat --offline "hi"`, and `llm -m fake hi` (Simon Willison's
`llm` pointed at the fake's OpenAI endpoint through `extra-openai-models.yaml`) when `--llm` names it or it
is on PATH. Then `cfai serve` (with a key from `cfai keygen`, so keys, config and routes are all loaded and
checked) from spawn to the first 200 on `/health`, the median of `--rounds` spawns.

    python bench/startup.py                              # cfai alone
    python bench/startup.py --llm /tmp/llmvenv/bin/llm   # and the ratio to llm
    python bench/startup.py --before /tmp/main/.venv/bin/cfai   # another build's cfai in the same runs
    python bench/startup.py --interleave --runs 15 --rounds 3 --before …   # each command once per round, in turn

Bytecode caching is on for the commands measured (PYTHONDONTWRITEBYTECODE is dropped, as a `pip install`
writes the caches), and the warm-up runs write them. Timing assertions never go in tests; this prints figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ACCOUNT = "0123456789abcdef0123456789abcdef"
LLM_MODELS = """- model_id: fake
  model_name: fake
  api_base: "http://127.0.0.1:{port}/v1"
  api_key_name: fake
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_fake() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(HERE / "fake_upstream.py"), "--port", str(port)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError("the fake upstream did not start")


def fake_env(home: str, port: int) -> dict[str, str]:
    """The environment of every command measured: a fresh CFAI_HOME, the fake as Workers AI and as llm's
    OpenAI endpoint, and nothing of the caller's cfai or Cloudflare settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CFAI_", "CLOUDFLARE_", "LLM_")) and k != "PYTHONDONTWRITEBYTECODE"}
    llm_home = Path(home) / "llm"
    llm_home.mkdir(exist_ok=True)
    (llm_home / "extra-openai-models.yaml").write_text(LLM_MODELS.format(port=port))
    (llm_home / "keys.json").write_text('{"fake": "sk-fake"}')
    env.update(CFAI_HOME=home, CFAI_API_BASE=f"http://127.0.0.1:{port}/client/v4", CLOUDFLARE_ACCOUNT_ID=ACCOUNT,
               CLOUDFLARE_API_TOKEN="fake-token", LLM_USER_PATH=str(llm_home))
    return env


def health_ok(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used so far: on a shared machine it moves far less than
    the wall time, so it compares builds measured while other work runs."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_to_ready(cfai: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Seconds from spawning `cfai serve` to its first 200 on /health (polled every millisecond), and the
    CPU seconds it used to get there."""
    port = free_port()
    start = time.perf_counter()
    proc = subprocess.Popen([*cfai, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while not health_ok(port):
            if proc.poll() is not None:
                raise RuntimeError(f"{' '.join(cfai)} serve exited with status {proc.returncode}")
            if time.perf_counter() - start > 30:
                raise RuntimeError("cfai serve did not answer /health within 30 s")
            time.sleep(0.001)
        return time.perf_counter() - start, cpu_seconds(proc.pid)
    finally:
        proc.terminate()
        proc.wait()


def hyperfine(commands: dict[str, str], env: dict[str, str], runs: int) -> dict[str, dict[str, float]]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = ["hyperfine", "-N", "--warmup", "3", "--runs", str(runs), "--export-json", out.name, "--style", "none"]
        for name, command in commands.items():
            cmd += ["-n", name, command]
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        results = json.loads(Path(out.name).read_text())["results"]
    return {r["command"]: {"median": r["median"] * 1000, "cpu": (r["user"] + r["system"]) * 1000} for r in results}


def interleaved(commands: dict[str, str], env: dict[str, str], rounds: int) -> dict[str, dict[str, float]]:
    """hyperfine runs one command's runs back to back, so a change in the machine's load between two commands
    lands in their ratio; this runs every command once per round, in turn, and keeps each one's median wall
    and CPU time (user + sys of the process, from wait4)."""
    walls: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(rounds + 1):  # the first round warms up (bytecode caches)
        for name, command in commands.items():
            start = time.perf_counter()
            proc = subprocess.Popen(command.split(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                raise RuntimeError(f"{command} exited with status {proc.returncode}")
            walls[name].append(time.perf_counter() - start)
            cpus[name].append(usage.ru_utime + usage.ru_stime)
    return {name: {"median": statistics.median(walls[name][1:]) * 1000, "cpu": statistics.median(cpus[name][1:]) * 1000}
            for name in commands}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfai", default=shutil.which("cfai") or "cfai", help="the cfai to measure")
    parser.add_argument("--before", help="another build's cfai, measured in the same runs")
    parser.add_argument("--llm", default=shutil.which("llm"), help="the llm command to compare with")
    parser.add_argument("--runs", type=int, default=20, help="hyperfine runs per command")
    parser.add_argument("--rounds", type=int, default=15, help="`cfai serve` spawns")
    parser.add_argument("--serve-only", action="store_true", help="only `cfai serve`'s time to ready")
    parser.add_argument("--interleave", action="store_true",
                        help="instead of hyperfine, every command once per round in turn (--runs rounds): medians of "
                             "wall and CPU time a changing load cannot favour")
    args = parser.parse_args()
    if not shutil.which("hyperfine"):
        sys.exit("bench/startup.py needs hyperfine (apt-get install -y hyperfine)")
    builds = {"": args.cfai, **({"before: ": args.before} if args.before else {})}
    fake, port = start_fake()
    try:
        with tempfile.TemporaryDirectory(prefix="cfai-startup-") as home:
            env = fake_env(home, port)
            subprocess.run([args.cfai, "keygen"], env=env, check=True, capture_output=True)
            commands: dict[str, str] = {}
            for label, cfai in builds.items():
                commands[f"{label}cfai --help"] = f"{cfai} --help"
                commands[f"{label}cfai chat hi"] = f"{cfai} chat hi"
                commands[f"{label}cfai chat --offline hi"] = f"{cfai} chat --offline hi"
            if args.llm:
                commands["llm -m fake hi"] = f"{args.llm} -m fake hi"
            measure = interleaved if args.interleave else hyperfine
            timed = {} if args.serve_only else measure(commands, env, args.runs)
            ready: dict[str, list[tuple[float, float]]] = {label: [] for label in builds}
            for _ in range(args.rounds):  # interleaved, so both builds see the same load
                for label, cfai in builds.items():
                    ready[label].append(time_to_ready([cfai], env))
    finally:
        fake.terminate()
        fake.wait()
    how = f"{args.runs} interleaved rounds" if args.interleave else f"hyperfine -N, {args.runs} runs"
    cpu = "median" if args.interleave else "mean"
    print(f"| command | median wall ({how}) | CPU (user + sys, {cpu}) |")
    print("| --- | ---: | ---: |")
    for name, figures in timed.items():
        print(f"| `{name}` | {figures['median']:.0f} ms | {figures['cpu']:.0f} ms |")
    for label in builds:
        wall = statistics.median(r[0] for r in ready[label]) * 1000
        cpu = statistics.median(r[1] for r in ready[label]) * 1000
        print(f"| `{label}cfai serve` to the first /health 200 (median of {args.rounds}) | {wall:.0f} ms | "
              f"{cpu:.0f} ms |")
    if args.llm and not args.serve_only:
        llm = timed["llm -m fake hi"]
        chat = timed["cfai chat hi"]
        print(f"\ncfai chat hi / llm -m fake hi: {chat['median'] / llm['median']:.2f}x wall, "
              f"{chat['cpu'] / llm['cpu']:.2f}x CPU")


if __name__ == "__main__":
    main()
