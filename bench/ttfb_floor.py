"""The floor under a stream's first event: what one more process in the path adds on this machine, cfai or not.

Issue 25 target 4 asks for a stream's time to first byte through the proxy within 0.3 ms of direct. bench/streams.py
measures cfai's; this measures, in the same interleaved rounds and with the same client (bench/ttfb.py) against
the same fake Workers AI holding a stream's events after the first (`--gap-ms`, so the path idles between
requests as it does in streams.py), servers that do the least a proxy can:

  bare           uvicorn (uvloop, httptools) + a Starlette route answering a fixed first event (or JSON body)
                 itself, no upstream: the server stack's own cost after the same idle;
  tcp-pipe       asyncio copying bytes between the client's socket and one upstream socket per client
                 connection (no HTTP at all: one more process hop and nothing else);
  stream-relay   uvicorn (uvloop, httptools) + a Starlette route streaming the upstream answer's bytes back
                 through one pooled httpx.AsyncClient (what any Python streaming proxy on the fixed stack does);
  lean-relay     the same route, the upstream call made by cfai's own client (bench/lean_relay.py: one
                 cfai_cli.upstream.lean.Lean pool, the request head from upstream.http11's public helpers, as
                 upstream.workers makes it) and nothing else: the least a proxy on cfai's stack can do;
  cfai           `cfai serve` with a key, as streams.py runs it.

and, for each, an "idle chat": a whole non-stream answer after the same idle gap, and the first event "back to
back": the stream against the fake that sends it whole at once, one request right after another (what bench/run.py's
"time to first event" row measures). If tcp-pipe or a relay already add more than the target, the target is below
what this machine allows the stack.

    python bench/ttfb_floor.py                 # 5 rounds of 400 requests each
    python bench/ttfb_floor.py --rounds 3 --requests 300
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import ACCOUNT, MODEL, NATIVE_BODY, OPENAI_BODY, Bench, free_port, wait_http  # noqa: E402
from ttfb import ttfb  # noqa: E402

PIPE = textwrap.dedent(r'''
    import asyncio, os
    UP = int(os.environ["FLOOR_UPSTREAM_PORT"])

    async def copy(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
        finally:
            writer.close()

    async def client(reader, writer):
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", UP)
        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer), return_exceptions=True)

    async def main():
        try:
            import uvloop
            uvloop.install()
        except ImportError:
            pass
        server = await asyncio.start_server(client, "127.0.0.1", int(os.environ["FLOOR_PORT"]))
        async with server:
            await server.serve_forever()

    asyncio.run(main())
''')

RELAY = textwrap.dedent(r'''
    import os, httpx, uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    UPSTREAM = os.environ["FLOOR_UPSTREAM"]
    client = httpx.AsyncClient(limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))

    FIRST = b'data: {"response":"tok0 "}\n\n'
    ANSWER = b'{"result":{"response":"hello"},"success":true,"errors":[],"messages":[]}'

    async def relay(request):
        body = await request.body()
        if os.environ["FLOOR_MODE"] == "bare":  # no upstream: the server stack's own cost
            if b'"stream": true' in body or b'"stream":true' in body:
                async def one():
                    yield FIRST
                return StreamingResponse(one(), media_type="text/event-stream")
            return Response(ANSWER, media_type="application/json")
        upstream = client.build_request("POST", UPSTREAM + "/" + request.path_params["path"], content=body,
                                        headers={"content-type": "application/json"})
        answer = await client.send(upstream, stream=True)
        kind = answer.headers.get("content-type", "application/json")
        if not kind.startswith("text/event-stream"):
            data = await answer.aread()
            return Response(data, media_type=kind)
        async def events():
            try:
                async for chunk in answer.aiter_raw():
                    yield chunk
            finally:
                await answer.aclose()
        return StreamingResponse(events(), media_type=kind)

    app = Starlette(routes=[Route("/{path:path}", relay, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["FLOOR_PORT"]), log_level="warning",
                access_log=False, server_header=False)
''')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=400, help="TTFB requests per round (default 400)")
    parser.add_argument("--gap-ms", type=float, default=5.0, help="the gapped fake's hold (default 5)")
    args = parser.parse_args()
    bench = Bench(argparse.Namespace(python_load=True, seconds=1.0))
    up, gapped = bench.up_port, free_port()
    try:
        bench.start([sys.executable, str(HERE / "fake_upstream.py"), "--port", str(up)],
                    f"http://127.0.0.1:{up}/health")
        bench.start([sys.executable, str(HERE / "fake_upstream.py"), "--port", str(gapped),
                     "--stream-gap-ms", str(args.gap_ms)], f"http://127.0.0.1:{gapped}/health")
        run_path = f"/client/v4/accounts/{ACCOUNT}/ai/run/{MODEL}"
        native_stream = json.dumps({**NATIVE_BODY, "stream": True}).encode()
        native_plain = json.dumps(NATIVE_BODY).encode()
        # name -> ((stream url, plain url), stream body, plain body, headers)
        targets: dict[str, tuple[tuple[str, str], bytes, bytes, dict[str, str]]] = {
            "direct": ((f"http://127.0.0.1:{gapped}{run_path}", f"http://127.0.0.1:{up}{run_path}"),
                       native_stream, native_plain, {})}
        for name, code in (("bare", RELAY), ("tcp-pipe", PIPE), ("stream-relay", RELAY),
                           ("lean-relay", None)):
            urls = []
            for upstream_port in (gapped, up):
                port = free_port()
                env = {**os.environ, "FLOOR_MODE": name, "FLOOR_PORT": str(port),
                       "FLOOR_UPSTREAM_PORT": str(upstream_port), "FLOOR_UPSTREAM": f"http://127.0.0.1:{upstream_port}"}
                command = [sys.executable, *([str(HERE / "lean_relay.py")] if code is None else ["-c", code])]
                bench.procs.append(subprocess.Popen(command, env=env,
                                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                urls.append(f"http://127.0.0.1:{port}{run_path}")
            for url in urls:  # no /health on these two: wait for a first answer
                wait_answer(url, native_plain)
            targets[name] = ((urls[0], urls[1]), native_stream, native_plain, {})
        home = Path(tempfile.mkdtemp(prefix="cfai-ttfb-floor-"))
        env = {**bench.env, "CFAI_HOME": str(home)}
        cfai = [sys.executable, "-m", "cfai_cli"]
        key = subprocess.run([*cfai, "keygen", "--name", "bench"], env=env, capture_output=True, text=True,
                             check=True).stdout.strip()
        urls = []
        for upstream_port in (gapped, up):
            port = free_port()
            bench.procs.append(subprocess.Popen(
                [*cfai, "serve", "--port", str(port), "--max-concurrency", "4096"],
                env={**env, "CFAI_API_BASE": f"http://127.0.0.1:{upstream_port}/client/v4"},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_http(f"http://127.0.0.1:{port}/health")
            urls.append(f"http://127.0.0.1:{port}/v1/chat/completions")
        targets["cfai"] = ((urls[0], urls[1]), json.dumps({**OPENAI_BODY, "stream": True}).encode(),
                           json.dumps(OPENAI_BODY).encode(), {"Authorization": f"Bearer {key}"})
        figures: dict[str, dict[str, list[float]]] = {name: {"ttfb": [], "idle": [], "b2b": []} for name in targets}
        pause = args.gap_ms / 1000
        for _ in range(args.rounds):
            for name, ((stream_url, plain_url), stream_body, plain_body, headers) in targets.items():
                figures[name]["ttfb"].append(statistics.median(
                    ttfb(stream_url, stream_body, headers, requests=args.requests)) * 1000)
                figures[name]["idle"].append(statistics.median(
                    ttfb(plain_url, plain_body, headers, requests=args.requests // 2, warmup=10,
                         pause=pause)) * 1000)
                figures[name]["b2b"].append(statistics.median(
                    ttfb(plain_url, stream_body, headers, requests=args.requests)) * 1000)
    finally:
        bench.close()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; {args.rounds} rounds interleaved, "
          f"medians of rounds; the fake holds a stream's events after the first for {args.gap_ms:g} ms\n")
    print("| path | first event p50 | added | idle chat p50 | added | first event back to back | added |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    d = {k: statistics.median(v) for k, v in figures["direct"].items()}
    for name, figure in figures.items():
        f = {k: statistics.median(v) for k, v in figure.items()}
        added = ("", "", "") if name == "direct" else tuple(f"+{f[m] - d[m]:.3f} ms" for m in ("ttfb", "idle", "b2b"))
        print(f"| {name} | {f['ttfb']:.3f} ms | {added[0]} | {f['idle']:.3f} ms | {added[1]} | {f['b2b']:.3f} ms "
              f"| {added[2]} |")
    print("\nrounds: " + json.dumps({k: {m: [round(x, 3) for x in v] for m, v in f.items()}
                                   for k, f in figures.items()}))


def wait_answer(url: str, body: bytes, seconds: float = 20.0) -> None:
    """Until `url` answers a POST (the floor servers have no /health)."""
    import time
    import urllib.request

    deadline = time.monotonic() + seconds
    while True:
        try:
            request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
            with urllib.request.urlopen(request, timeout=2) as answer:
                answer.read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


if __name__ == "__main__":
    main()
