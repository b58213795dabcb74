"""The least a streaming proxy on cfai's stack can do: uvicorn (uvloop, httptools) + one Starlette route that sends
the request's body upstream through cfai's own upstream client and streams the answer's bytes back, nothing else.

The upstream call is cfai_cli.upstream.lean.Lean (one pool), its request head made as upstream.workers makes it,
with upstream.http11's public helpers (`Heads`, `header_block`, `header_pairs`, `header_map`): no key check, no
validation, no translation, no routing, no records. bench/ttfb_floor.py runs it as a server ("lean-relay": the floor
under a stream's first event on this stack), bench/stream_cpu.py --lean-relay calls its app in process (the
instructions to its first write, counted as cfai's are).

    FLOOR_PORT=8701 FLOOR_UPSTREAM=http://127.0.0.1:8700 python bench/lean_relay.py
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from cfai_cli.upstream.http11 import Heads, header_block, header_map, header_pairs
from cfai_cli.upstream.lean import Lean, LeanBody


def app_for(upstream: str) -> Starlette:
    """The relay's app: every POST to /{path} goes to `upstream`/{path} as it came (a JSON body)."""
    lean, heads = Lean(max_connections=64), Heads()
    block = header_block(header_pairs({"content-type": "application/json"}))

    async def relay(request: Request) -> Response:
        body = await request.body()
        key, head = heads.head(upstream + "/" + request.path_params["path"], block, len(body))
        answer = await lean.open(key, head, body, None)
        kind = header_map(answer.exchange.headers).get("content-type", "application/json")
        if not kind.startswith("text/event-stream"):
            try:
                return Response(await answer.read(), media_type=kind)
            finally:
                await answer.aclose()
        return StreamingResponse(_events(answer), media_type=kind)

    return Starlette(routes=[Route("/{path:path}", relay, methods=["POST"])])


async def _events(answer: LeanBody) -> AsyncIterator[bytes]:
    try:
        async for chunk in answer:
            yield chunk
    finally:
        await answer.aclose()


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app_for(os.environ["FLOOR_UPSTREAM"]), host="127.0.0.1", port=int(os.environ["FLOOR_PORT"]),
                log_level="warning", access_log=False, server_header=False)
