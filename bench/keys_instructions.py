"""What a key's rpm+tpm limits cost in instructions (callgrind: deterministic, unlike time on a shared machine).

Runs the proxy in-process (create_app, keys on, zero-latency Workers AI through httpx.MockTransport, requests one
after another straight into the ASGI app, as a server hands them over) under `valgrind --tool=callgrind`, twice
per key: `--small` and `--large` requests after a warm-up, so the difference divided by the extra requests is the
instructions of one request without the start-up's. Prints them for a key without limits and one with
--rpm/--tpm set too high to refuse (and, with `--kinds`, one with a budget too big to refuse: its door check, hold
and settlement), the differences, and SQLite's share of them. Compare two builds with PYTHONPATH=/other/checkout.
The requests are not sent through an httpx client (httpx.ASGITransport, until 2026-12-02): it parsed the answer's
six x-ratelimit-* headers twice (its Headers, and an email.message.Message per response for its cookie jar), and
that client-side work, which no real server pays, was counted as the limits' cost. The stand-in for Workers AI
lets the event loop turn once, as a real upstream call does, and so does the client between two requests (without
them a request, or the end of one and the start of the next, ran in one turn of the loop, and its second piece of
SQLite work went the way of concurrent requests': a future and two more turns).

    python bench/keys_instructions.py [--small 100] [--large 400]      # ~5-9 minutes (two callgrind runs at a time)
    python bench/keys_instructions.py --kinds "no limits,budget"       # the budget key instead
    python bench/keys_instructions.py --hold 1    # tokens ride on the next admission, as natively at c=1 (round 8)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

KINDS = ("no limits", "rpm+tpm", "budget")
POLICIES: dict[str, dict[str, Any]] = {"no limits": {}, "rpm+tpm": {"rpm": 10**9, "tpm": 10**12},
                                       "budget": {"budget_neurons_per_day": 1e12}}


async def billing(request: httpx.Request) -> httpx.Response:
    await asyncio.sleep(0)  # the network round trip: the loop turns once, as it does with a real Workers AI
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    return httpx.Response(200, json={"result": {"response": "ok", "usage": usage}, "success": True, "errors": [],
                                     "messages": []}, headers={"cf-ai-neurons": "1.5"})


async def serve(kind: str, requests: int, hold: float | None = None) -> None:
    """The measured process: `requests` chat requests (after 30 of warm-up) with one key of `kind` (`hold`: store.hot's
    HOLD instead of its own, see `--hold`)."""
    os.environ["CFAI_HOME"] = tempfile.mkdtemp(prefix="cfai-bench-")
    os.environ.update(CLOUDFLARE_ACCOUNT_ID="0123456789abcdef0123456789abcdef", CLOUDFLARE_API_TOKEN="x")
    from cfai_cli.server import recorder
    from cfai_cli.server.app import create_app
    from cfai_cli.service.batch_executor import BatchExecutor
    from cfai_cli.settings import load_settings
    from cfai_cli.store.hot import HotPath
    from cfai_cli.store.keys import KeyPolicy, KeyStore

    if hold is not None:
        assert HotPath.__init__.__kwdefaults__ is not None
        HotPath.__init__.__kwdefaults__["hold"] = hold
    # Nothing on a timer while it runs: the usage rows are written at the end, the batch executor looks for work
    # once. The writer's flush every second opened a connection (the schema read again), the executor's look every
    # 2 s read the database: a slower run (a busier machine) did more of both, counted as its requests'.
    for cls, name in ((recorder.UsageRecorder, "interval"), (BatchExecutor, "poll_interval")):
        assert cls.__init__.__kwdefaults__ is not None
        cls.__init__.__kwdefaults__[name] = 3600.0
    settings = load_settings()
    policy = KeyPolicy(**POLICIES[kind])
    key, _ = KeyStore(settings.database).create("bench", policy)
    app = create_app(settings, transport=httpx.MockTransport(billing))
    body = json.dumps({"model": "@cf/meta/llama-3.1-8b-instruct",
                       "messages": [{"role": "user", "content": "Say hello."}]}).encode()
    headers = [(b"host", b"proxy.test"), (b"authorization", f"Bearer {key}".encode()),
               (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    async with app.router.lifespan_context(app):
        # What a server's first /health starts (server.app's _after_start: the modules loaded in a thread, the
        # batch executor), done before anything is counted: it came WARM_DELAY (1 s) after the start, inside
        # the longer of two callgrind runs only, and counted ~5 M instructions a request more for one of them.
        app.state.warm_up.set()
        while not hasattr(app.state, "batches"):
            await asyncio.sleep(0.01)
        for _ in range(30 + requests):
            status, answer = await call(app, headers, body)
            assert status == 200, answer
            await asyncio.sleep(0)  # the client's round trip: the next request comes in another turn of the loop


async def call(app: Any, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, bytes]:
    """One POST /v1/chat/completions into the ASGI app, as uvicorn hands it over: its status and body."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"",
             "root_path": "", "headers": headers, "client": ("127.0.0.1", 50000), "server": ("proxy.test", 80)}
    done = asyncio.get_running_loop().create_future()
    sent = False
    status, chunks = 0, []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done  # a listener for the client hanging up: it never does
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False) and not done.done():
                done.set_result(None)

    await app(scope, receive, send)
    return status, b"".join(chunks)


def callgrind(kind: str, requests: int, out: Path, hold: float | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
                             __file__, "--serve", kind, str(requests), *([] if hold is None else [str(hold)])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def totals(out: Path) -> tuple[int, int]:
    """All instructions of the run, and SQLite's (libsqlite3 and the _sqlite3 module)."""
    total = int(re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M).group(1))  # type: ignore[union-attr]
    annotated = subprocess.run(["callgrind_annotate", "--inclusive=no", str(out)], capture_output=True,
                               text=True, check=True).stdout
    sqlite = sum(int(line.split()[0].replace(",", "")) for line in annotated.splitlines()
                 if ("libsqlite3" in line or "_sqlite3" in line) and line.strip()[:1].isdigit())
    return total, sqlite


def main(small: int, large: int, kinds: list[str], hold: float | None = None) -> None:
    work = Path(tempfile.mkdtemp(prefix="cfai-cg-"))
    per: dict[str, tuple[float, float]] = {}
    for kind in kinds:
        outs = [work / f"{kind.replace(' ', '_')}.{n}.out" for n in (small, large)]
        for proc in [callgrind(kind, n, out, hold) for n, out in zip((small, large), outs, strict=True)]:
            if proc.wait() != 0:
                sys.exit(f"callgrind failed for {kind}: see {work}")
        (a, a_sql), (b, b_sql) = totals(outs[0]), totals(outs[1])
        per[kind] = ((b - a) / (large - small), (b_sql - a_sql) / (large - small))
        print(f"{kind:10} {per[kind][0] / 1e6:6.3f} M instructions a request ({per[kind][1] / 1e6:.3f} M in SQLite)")
    for kind in kinds[1:]:
        added, added_sql = (per[kind][i] - per[kinds[0]][i] for i in (0, 1))
        print(f"{'added':10} {added / 1e6:6.3f} M instructions by {kind} ({added_sql / 1e6:.3f} M in SQLite, "
              f"{added / per[kinds[0]][0]:.0%} of a request with {kinds[0]})")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        asyncio.run(serve(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]) if len(sys.argv) > 4 else None))
    else:
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("--small", type=int, default=100)
        parser.add_argument("--large", type=int, default=400)
        parser.add_argument("--kinds", default="no limits,rpm+tpm",
                            help=f"the keys to run, the first the baseline (of: {', '.join(KINDS)})")
        parser.add_argument("--hold", type=float, default=None,
                            help="store.hot's HOLD in the measured process (seconds; default its own, 10 ms): "
                                 "callgrind runs a request ~50x slower, so the hold a TPM key's tokens wait for the "
                                 "next admission ran out between two requests; 1 counts what a real c=1 run does")
        options = parser.parse_args()
        kinds = [kind.strip() for kind in options.kinds.split(",")]
        if len(kinds) < 2 or not set(kinds) <= set(KINDS):
            parser.error(f"--kinds: two or more of {', '.join(KINDS)}")
        main(options.small, options.large, kinds, options.hold)
