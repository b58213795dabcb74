"""What a key's budget adds to each request: the proxy in-process, chat requests one after another with a key
that has no budget and with one that has (its door check, its hold and its settlement in cfai.db).

Zero-latency Workers AI (an httpx.MockTransport reporting cf-ai-neurons), no HTTP serving: what is timed is
cfai's own work. Prints the median CPU time (this process, every thread) and wall time per request of several
rounds for each key, alternating, and the differences. CPU time hardly moves when other work shares the
machine; wall time includes the hops to worker threads, and the waits for SQLite's write lock. Compare two
builds alternately (PYTHONPATH=/other/checkout).

    python bench/budget_holds.py [--requests 300] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx


def billing(request: httpx.Request) -> httpx.Response:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    return httpx.Response(200, json={"result": {"response": "ok", "usage": usage}, "success": True, "errors": [],
                                     "messages": []}, headers={"cf-ai-neurons": "1.5"})


async def main(requests: int, rounds: int) -> None:
    import os

    os.environ["CFAI_HOME"] = tempfile.mkdtemp(prefix="cfai-bench-")
    os.environ.update(CLOUDFLARE_ACCOUNT_ID="0123456789abcdef0123456789abcdef", CLOUDFLARE_API_TOKEN="x")
    from cfai_cli.server.app import create_app
    from cfai_cli.settings import load_settings
    from cfai_cli.store.keys import KeyPolicy, KeyStore

    settings = load_settings()
    store = KeyStore(settings.database)
    plain, _ = store.create("plain", KeyPolicy())
    budgeted, _ = store.create("budgeted", KeyPolicy(budget_neurons_per_day=1e12))
    app = create_app(settings, transport=httpx.MockTransport(billing))
    body: dict[str, Any] = {"model": "@cf/meta/llama-3.1-8b-instruct",
                            "messages": [{"role": "user", "content": "Say hello."}]}
    times: dict[str, list[float]] = {"no budget": [], "budget": []}
    cpu: dict[str, list[float]] = {"no budget": [], "budget": []}
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test") as client:
        for key in (plain, budgeted):  # warm up: imports, caches, the schema
            for _ in range(20):
                assert (await client.post("/v1/chat/completions", json=body,
                                          headers={"Authorization": f"Bearer {key}"})).status_code == 200
        for _ in range(rounds):
            for name, key in (("no budget", plain), ("budget", budgeted)):
                headers = {"Authorization": f"Bearer {key}"}
                start, start_cpu = time.perf_counter(), time.process_time()
                for _ in range(requests):
                    await client.post("/v1/chat/completions", json=body, headers=headers)
                times[name].append((time.perf_counter() - start) / requests * 1e6)
                cpu[name].append((time.process_time() - start_cpu) / requests * 1e6)
    wall = {name: statistics.median(values) for name, values in times.items()}
    used = {name: statistics.median(values) for name, values in cpu.items()}
    for name in wall:
        print(f"{name:10} {used[name]:8.0f} µs CPU {wall[name]:8.0f} µs wall per request "
              f"(medians of {rounds} rounds of {requests})")
    print(f"{'added':10} {used['budget'] - used['no budget']:8.0f} µs CPU {wall['budget'] - wall['no budget']:8.0f} "
          "µs wall")
    print(f"database: {Path(os.environ['CFAI_HOME'])}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    options = parser.parse_args()
    asyncio.run(main(options.requests, options.rounds))
