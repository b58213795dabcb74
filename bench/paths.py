"""CPU time of cfai's own request paths, in-process: the service and upstream layers without HTTP serving.

Starts bench/fake_upstream.py (zero-latency Workers AI on loopback, 20-event streams) and, in this process,
opens the service context the proxy uses (cfai's lean transport) and runs chat requests through
`service.chat` one after another: a whole answer, and a stream read batch by batch as the proxy writes it.
It prints the CPU time of this process per request (user + system), the median of several rounds. CPU time
hardly moves when other work shares the machine, so two builds can be compared on a busy one; run each build
alternately (A B A B) and compare medians:

    python bench/paths.py                       # the build this script sits in
    PYTHONPATH=/path/to/other/checkout python /path/to/this/bench/paths.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import free_port, wait_http  # noqa: E402

ACCOUNT = "0123456789abcdef0123456789abcdef"
BODY = {"model": "@cf/meta/llama-3.1-8b-instruct-fast", "messages": [{"role": "user", "content": "Say hello."}]}


async def measure(port: int, requests: int, rounds: int) -> dict[str, float]:
    from cfai_cli.core.openai.base import validate_request
    from cfai_cli.core.openai.chat import ChatCompletionRequest
    from cfai_cli.service.chat import create_chat_completion, open_chat_stream
    from cfai_cli.service.context import open_context
    from cfai_cli.service.record import RequestRecord
    from cfai_cli.settings import load_settings

    home = tempfile.mkdtemp(prefix="cfai-paths-")
    settings = load_settings({"account_id": ACCOUNT, "api_token": "bench-token",
                              "api_base": f"http://127.0.0.1:{port}/client/v4"}, environ={"CFAI_HOME": home})
    whole = validate_request(ChatCompletionRequest, BODY)
    streamed = validate_request(ChatCompletionRequest, {**BODY, "stream": True})
    out: dict[str, list[float]] = {"chat": [], "stream": []}
    async with open_context(settings) as ctx:

        async def chat() -> None:
            await create_chat_completion(ctx.for_request(RequestRecord()), whole)

        async def stream() -> None:
            answer = await open_chat_stream(ctx.for_request(RequestRecord()), streamed)
            try:
                async for _ in answer.batches():  # as the proxy writes it: a batch per upstream read
                    pass
            finally:
                await answer.aclose()

        for _ in range(rounds):
            for name, call in (("chat", chat), ("stream", stream)):
                for _ in range(requests // 10):  # warm-up
                    await call()
                start = time.process_time()
                for _ in range(requests):
                    await call()
                out[name].append((time.process_time() - start) / requests * 1e6)
    return {name: statistics.median(values) for name, values in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per round (default 2000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the median is printed (default 5)")
    args = parser.parse_args()
    port = free_port()
    fake = subprocess.Popen([sys.executable, str(HERE / "fake_upstream.py"), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        import cfai_cli

        figures = asyncio.run(measure(port, args.requests, args.rounds))
    finally:
        fake.terminate()
        fake.wait(10)
    print(f"cfai from {Path(cfai_cli.__file__).parent.parent}; {os.cpu_count()} CPUs; "
          f"{args.requests} requests x {args.rounds} rounds")
    for name, micros in figures.items():
        print(f"{name:<7} {micros:8.1f} µs CPU per request (median of rounds)")


if __name__ == "__main__":
    main()
