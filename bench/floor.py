"""The floor of the stack: what uvicorn + Starlette + httpx cost before any cfai code runs.

Issue 8 asks for +0.5 ms p50 at c=1 and 2,000 req/s at c=32 with one worker. This measures, on the same
machine and fake upstream as bench/run.py, three servers that hold none of cfai's code:

  bare     uvicorn (uvloop, httptools) + a Starlette route answering a fixed JSON body;
  raw-relay  the route forwarding the body upstream over a 30-line keep-alive client on asyncio streams;
  httpx+raw  httpx.AsyncClient with that raw client as its transport (httpx's client layer without httpcore);
  relay    the same route forwarding the request body to the fake Workers AI with one pooled
           httpx.AsyncClient and answering its body as is (what any Python proxy on this stack must do);
  relay+v  relay, plus parsing the request and the upstream answer with pydantic/json (the least
           translation an OpenAI proxy does).

and `cfai serve --no-auth` for comparison. If `relay` alone misses a target, that target is out of reach
with the stack the project is fixed to (typer, rich, httpx, pydantic, starlette, uvicorn).

    python bench/floor.py              # 5 s per load
    python bench/floor.py --seconds 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run  # noqa: E402

APP = textwrap.dedent(r'''
    import json, os, httpx, uvicorn
    from pydantic import BaseModel
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    import asyncio
    from urllib.parse import urlsplit

    MODE, UPSTREAM = os.environ["FLOOR_MODE"], os.environ["FLOOR_UPSTREAM"]
    client = None
    URL = urlsplit(UPSTREAM)
    idle = []

    async def raw_post(body):
        """A minimal HTTP/1.1 keep-alive POST on asyncio streams (Content-Length answers only)."""
        reader, writer = idle.pop() if idle else await asyncio.open_connection(URL.hostname, URL.port)
        writer.write(b"POST %s HTTP/1.1\r\nHost: %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                     % (URL.path.encode(), URL.netloc.encode(), len(body), body))
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        data = await reader.readexactly(length)
        idle.append((reader, writer))
        return data

    class RawTransport(httpx.AsyncBaseTransport):
        """httpx's transport seam with the raw client behind it: what httpx's own client layer costs."""
        async def handle_async_request(self, request):
            data = await raw_post(await request.aread())
            return httpx.Response(200, headers={"content-type": "application/json"}, content=data)

    class Message(BaseModel):
        role: str
        content: str

    class Chat(BaseModel):
        model: str
        messages: list[Message]

    async def chat(request):
        global client
        body = await request.body()
        if MODE == "bare":
            return JSONResponse({"id": "x", "object": "chat.completion", "choices": []})
        if MODE == "raw-relay":
            return Response(await raw_post(body), media_type="application/json")
        if client is None:
            client = httpx.AsyncClient(limits=httpx.Limits(max_connections=512, max_keepalive_connections=512),
                                       transport=RawTransport() if MODE == "httpx+raw" else None)
        if MODE == "httpx+raw":
            answer = await client.post(UPSTREAM, content=body, headers={"content-type": "application/json"})
            return Response(answer.content, media_type="application/json")
        if MODE == "relay":
            answer = await client.post(UPSTREAM, content=body, headers={"content-type": "application/json"})
            return Response(answer.content, media_type="application/json")
        req = Chat.model_validate_json(body)
        answer = await client.post(UPSTREAM, json={"messages": [m.model_dump() for m in req.messages]})
        result = answer.json()["result"]
        return JSONResponse({"id": "x", "object": "chat.completion", "model": req.model,
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": result["response"]},
                                          "finish_reason": "stop"}], "usage": result.get("usage")})

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["FLOOR_PORT"]), log_level="warning",
                access_log=False, server_header=False)
''')


def start_app(mode: str, port: int, upstream: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FLOOR_MODE": mode, "FLOOR_PORT": str(port), "FLOOR_UPSTREAM": upstream}
    return subprocess.Popen([sys.executable, "-c", APP], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    load = run.wrk if shutil.which("wrk") else run.python_load
    up_port = run.free_port()
    upstream = subprocess.Popen([sys.executable, str(HERE / "fake_upstream.py"), "--port", str(up_port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{up_port}/client/v4"
    run_url = f"{base}/accounts/{run.ACCOUNT}/ai/run/{run.MODEL}"
    body = json.dumps(run.OPENAI_BODY).encode()
    headers = {"content-type": "application/json"}
    procs: list[subprocess.Popen[bytes]] = [upstream]
    rows = []
    try:
        time.sleep(0.5)
        targets = {"direct upstream": (run_url, json.dumps(run.NATIVE_BODY).encode())}
        for mode in ("bare", "raw-relay", "httpx+raw", "relay", "relay+v"):
            port = run.free_port()
            procs.append(start_app(mode, port, run_url))
            targets[mode] = (f"http://127.0.0.1:{port}/v1/chat/completions", body)
        home = tempfile.mkdtemp(prefix="cfai-floor-")
        port = run.free_port()
        env = {**os.environ, "CFAI_HOME": home, "CFAI_API_BASE": base, "CLOUDFLARE_ACCOUNT_ID": run.ACCOUNT,
               "CLOUDFLARE_API_TOKEN": "bench-token"}
        procs.append(subprocess.Popen([sys.executable, "-m", "cfai_cli", "serve", "--no-auth", "--port", str(port)],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        targets["cfai serve --no-auth"] = (f"http://127.0.0.1:{port}/v1/chat/completions", body)
        for name, (url, payload) in targets.items():
            deadline = time.monotonic() + 20
            while True:  # the first request also warms the upstream connection pool
                try:
                    load(url, payload, headers, connections=1, seconds=1)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            one = load(url, payload, headers, connections=1, seconds=args.seconds)
            many = load(url, payload, headers, connections=32, seconds=args.seconds)
            rows.append((name, one, many))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
    direct = rows[0][1].p50
    print(f"{'server':<24}{'c=1 p50':>10}{'added':>10}{'c=1 p99':>10}{'c=32 req/s':>12}{'errors':>8}")
    for name, one, many in rows:
        added = "" if name == "direct upstream" else f"+{one.p50 - direct:.2f}"
        print(f"{name:<24}{one.p50:>8.2f}ms{added:>10}{one.p99:>8.2f}ms{many.rps:>12,.0f}{one.errors + many.errors:>8}")


if __name__ == "__main__":
    main()
