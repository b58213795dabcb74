"""What `cfai` imports before it answers, from `python -X importtime`, against a budget (a bench, not a test).

Runs each scenario several times (bytecode caching on: PYTHONDONTWRITEBYTECODE is dropped, as for a user's
`pip install`), keeps each module's fastest self time (the machine is shared, so the minimum is the signal),
and prints the top cumulative imports, the heaviest packages, and a verdict per scenario: the number of
modules imported against its budget (a count, so the verdict does not move with the load of a shared machine;
the milliseconds are printed, and `-X importtime` itself inflates them), and modules that must not be imported
at all on that path (`cfai --help` must not load httpx, pydantic or rich; `cfai chat` must not load the
server). Exit status 1 when something is over.

    python bench/importtime.py                 # all scenarios, 5 runs each
    python bench/importtime.py chat --runs 9 --top 40
    python bench/importtime.py --python /tmp/main/.venv/bin/python   # another build (its venv's python)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from itertools import count
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from startup import fake_env, free_port, health_ok, start_fake  # noqa: E402


@dataclass(frozen=True)
class Scenario:
    argv: tuple[str, ...]
    budget: int  # modules imported (measured 2026-12-01/02, issue 25 rounds 2-5, plus a little room; round 5 split
    # upstream/workers.py past 400 lines: its answer shapes are one module more on the chat paths)
    forbidden: tuple[str, ...]  # top-level packages (or cfai_cli sub-packages) this path must not import
    fake: bool = False  # needs the fake upstream
    serve: bool = False  # `cfai serve`: measured until its first 200 on /health
    new_key: bool = False  # a COLUMNS past click's 80-column cap, new every run: `cfai --help` through Typer


SERVER_SIDE = ("cfai_cli.server", "starlette", "uvicorn", "prometheus_client", "cfai_cli.emulator")
# What a one-shot chat with the default (Cloudflare-only) setup has no use for: the other upstreams' clients,
# the embeddings models, the budgets module, and pydantic's plugin loader's importlib.metadata (cli/entry.py)
# (2026-12-02, issue 25 round 3).
# Round 9: an image answer's reader, forced tools' salvage and the cache's assembly of a stored stream.
CHAT_UNUSED = ("cfai_cli.upstream.anthropic", "cfai_cli.upstream.openai_compat", "cfai_cli.core.openai.embeddings",
               "cfai_cli.core.budgets", "importlib.metadata", "cfai_cli.core.workers.image_cut",
               "cfai_cli.core.workers.raw_member", "cfai_cli.core.translate.salvage",
               "cfai_cli.core.translate.chat_assemble")
# What a streamed one-shot answer has no use for (2026-12-02, round 5): the token estimator (a continued
# conversation's history), the forced-call retry (a whole answer), the router's /health and route-check views.
STREAM_UNUSED = ("cfai_cli.core.tokens", "cfai_cli.service.forced", "cfai_cli.upstream.router_view")
# What a one-shot's Workers AI call on the lean transport has no use for (2026-12-02, round 6): httpx (upstream.lean,
# upstream.httperrors: imported for a multipart or GET call, or a failure) with the standard library it imports at
# the top, and anyio (httpcore's; service.chat_stream for n > 1).
LEAN_UNUSED = ("httpx", "httpcore", "anyio", "urllib.request", "http.client", "http.cookiejar", "email", "mimetypes",
               "idna")
SHARED_ONLY = ("psycopg", "psycopg_pool")  # [store] url = "postgresql://…" only (store/sql.py): never the single host
# `cfai --help` lists every command without the settings and the model catalogue (with its price table) that
# running one loads (2026-12-02, issue 25 target 2).
LISTING_UNUSED = ("cfai_cli.settings", "cfai_cli.core.catalog", "cfai_cli.core.cost")
# What the emulator does not need for one text answer: a web framework, anyio's event-loop backend (a drained
# tail), the multipart parser and the other tasks' modules (2026-12-02, emulator.asgi, upstream.network).
OFFLINE_UNUSED = ("starlette", "python_multipart", "anyio._backends", "anyio._core", "cfai_cli.emulator.images",
                  "cfai_cli.emulator.audio", "cfai_cli.emulator.embeddings", "cfai_cli.emulator.queue",
                  "cfai_cli.emulator.guard", "cfai_cli.emulator.rerank")
SCENARIOS: dict[str, Scenario] = {
    # The listing an earlier run printed, kept (cli/roothelp.py, 2026-12-02 round 5): no Typer, no command module.
    # Round 6: 65 -> 47, an editable install's .pth a plain path, not setuptools' finder module (pyproject.toml).
    "help": Scenario(("--help",), 47, ("typer", "cfai_cli.cli.app", "cfai_cli.cli.chat", "httpx", "pydantic",
                                        "rich", "anyio", "asyncio", *LISTING_UNUSED, *SERVER_SIDE, *SHARED_ONLY)),
    # Through Typer, as the first run (or another terminal width, Typer or cfai) prints it.
    "help-typer": Scenario(("--help",), 157, ("httpx", "pydantic", "rich", "anyio", "asyncio", *LISTING_UNUSED,
                                              *SERVER_SIDE, *SHARED_ONLY), new_key=True),
    # +1 each on 2026-12-02 for cli/compiled.py (its table saves ~270 M instructions of `cfai chat hi`); chat +1 for
    # core.defaults, the default model names `cfai --help` reads without the catalogue.
    # 2026-12-02 round 5: -5 (STREAM_UNUSED, core.translate.forced, core.sniff with nothing piped), +3 (gc,
    # cli.collector, cli.roothelp). Round 6: 406 -> 346 (LEAN_UNUSED; upstream.lean, upstream.httperrors and
    # upstream.workers_heads +3, the split that keeps each module under 400 lines; the editable install's finder -4).
    # Round 7: +3, each a module of its own importing nothing new: upstream.deadline (the call's deadline at half
    # asyncio.timeout_at's instructions), upstream.whole (the cap on answers read whole) and upstream.workers_account
    # (the account's endpoints, split from upstream.workers at 415 lines).
    # Round 9: 349 -> 345 (CHAT_UNUSED's last four, imported where used); 347: upstream.netenv split out of
    # upstream.lean (proxies and trusted certificates) and core.translate.text_filters out of chat_stream (one idea
    # a module, DESIGN.md habit 10). Round 10: 348, upstream.wire (a connection's bytes on a BufferedProtocol,
    # out of http11, in place of asyncio's streams).
    "chat": Scenario(("chat", "hi"), 348, ("rich", "cfai_cli.store.cache", *LEAN_UNUSED, *CHAT_UNUSED,
                                           *STREAM_UNUSED, *SERVER_SIDE, *SHARED_ONLY),
                     fake=True),
    # Round 7: 420 -> 358, the emulator reached in bytes (upstream.inprocess), not through httpx.ASGITransport;
    # 361 with the three modules named above the chat budget (counted 358 before the last of them).
    # Round 9: 361 -> 357, the same four; 359 with upstream.netenv and text_filters. Round 10: 360, upstream.wire.
    "offline": Scenario(("chat", "--offline", "hi"), 360, ("rich", "uvicorn", "prometheus_client", "cfai_cli.server",
                                                            *LEAN_UNUSED, *OFFLINE_UNUSED, *CHAT_UNUSED,
                                                            *STREAM_UNUSED, *SHARED_ONLY)),
    # Killed at its first /health 200 (541 modules on 2026-12-02, the build before 574). uvicorn's websocket
    # protocol (the websockets library) is imported by the first upgrade request, not at start.
    "serve": Scenario(("serve",), 560, ("rich", "websockets", *SHARED_ONLY), serve=True),
}


RUNS = count()


def parse(stderr: str) -> dict[str, tuple[int, int]]:
    """`import time: self | cumulative | name` lines -> {name: (self µs, cumulative µs)}."""
    out: dict[str, tuple[int, int]] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        self_us, cumulative, name = line[len("import time:"):].split("|")
        out[name.strip()] = (int(self_us), int(cumulative))
    return out


def run_once(scenario: Scenario, env: dict[str, str], python: str) -> str:
    """One run's stderr; `cfai serve` is killed once it answers /health (what it imports later is not
    start-up: a SIGTERM let the warm-up, which starts 50 ms after that answer, import ~150 modules more while
    uvicorn shut down)."""
    cmd = [python, "-X", "importtime", "-m", "cfai_cli", *scenario.argv]
    if scenario.new_key:  # the same text, but not the listing an earlier run kept (cli/roothelp.py)
        env = {**env, "COLUMNS": str(100 + next(RUNS))}
    if not scenario.serve:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=env["CFAI_HOME"]).stderr
    port = free_port()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([*cmd, "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=err,
                                cwd=env["CFAI_HOME"])  # not a checkout's cfai_cli/ that `-m` would find first
        try:
            while not health_ok(port):
                if proc.poll() is not None:
                    raise RuntimeError(f"cfai serve exited with status {proc.returncode}")
                time.sleep(0.005)
        finally:
            proc.kill()
            proc.wait()
        err.seek(0)
        return err.read()


def measure(scenario: Scenario, runs: int, env: dict[str, str], python: str) -> dict[str, tuple[int, int]]:
    best: dict[str, tuple[int, int]] = {}
    run_once(scenario, env, python)  # writes the bytecode caches (and cli/roothelp.py's listing): thrown away
    for _ in range(runs):
        run = parse(run_once(scenario, env, python))
        for name, (self_us, cumulative) in run.items():
            old = best.get(name, (10**9, 10**9))
            best[name] = (min(old[0], self_us), min(old[1], cumulative))
    return best


def group(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "cfai_cli" and len(parts) > 1 else parts[0]


def report(label: str, scenario: Scenario, best: dict[str, tuple[int, int]], top: int) -> bool:
    total = sum(self_us for self_us, _ in best.values()) / 1000
    print(f"\n== cfai {' '.join(scenario.argv)}: {len(best)} modules (budget {scenario.budget}), "
          f"{total:.1f} ms of imports")
    print("   cumulative (ms), the top imports:")
    for name, (_, cumulative) in sorted(best.items(), key=lambda item: -item[1][1])[:top]:
        print(f"   {cumulative / 1000:8.1f}  {name}")
    packages: dict[str, int] = defaultdict(int)
    for name, (self_us, _) in best.items():
        packages[group(name)] += self_us
    print("   self time by package (ms):")
    for name, self_us in sorted(packages.items(), key=lambda item: -item[1])[:12]:
        print(f"   {self_us / 1000:8.1f}  {name}")
    over = [name for name in best if any(name == f or name.startswith(f + ".") for f in scenario.forbidden)]
    ok = len(best) <= scenario.budget and not over
    if len(best) > scenario.budget:
        print(f"   OVER BUDGET: {len(best)} modules > {scenario.budget}")
    if over:
        print(f"   MUST NOT IMPORT: {', '.join(sorted(over)[:12])}")
    print(f"   {label}: {'ok' if ok else 'over'}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=f"of {', '.join(SCENARIOS)} (all)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--python", default=sys.executable, help="the interpreter whose cfai_cli is measured")
    args = parser.parse_args()
    chosen = args.scenarios or list(SCENARIOS)
    if set(chosen) - set(SCENARIOS):
        parser.error(f"scenarios are {', '.join(SCENARIOS)}")
    with tempfile.TemporaryDirectory(prefix="cfai-importtime-") as home:
        fake = start_fake() if any(SCENARIOS[name].fake or SCENARIOS[name].serve for name in chosen) else None
        try:
            env = fake_env(home, fake[1] if fake else 0)
            subprocess.run([args.python, "-m", "cfai_cli", "keygen"], env=env, check=True, capture_output=True,
                           cwd=home)
            results = [report(name, SCENARIOS[name], measure(SCENARIOS[name], args.runs, env, args.python), args.top)
                       for name in chosen]
        finally:
            if fake:
                fake[0].terminate()
                fake[0].wait()
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    main()
