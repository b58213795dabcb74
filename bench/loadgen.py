"""A small HTTP/1.1 load generator, the fallback when `wrk` is not installed (and a library for run.py).

Standard library only. `connections` keep-alive sockets each send the same POST back to back for
`seconds`; every request's latency (send to last body byte) is recorded, so percentiles are exact.
Responses are read by Content-Length or chunked framing (what uvicorn uses for streams). Run it under
uvloop when available so the generator, not the server, is rarely the bottleneck; prefer wrk anyway.

    python bench/loadgen.py --url http://127.0.0.1:3000/v1/chat/completions --body '{"model":"gpt-4o-mini",…}' \
        -c 32 -d 5 -H 'Authorization: Bearer sk-…'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)  # seconds
    errors: int = 0
    seconds: float = 0.0
    overhead_ms: list[float] = field(default_factory=list)  # x-cfai-overhead-ms, when sent

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        """The p-th percentile latency in ms (nearest rank)."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        rank = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
        return ordered[rank] * 1000


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return status, headers


async def _worker(host: str, port: int, request: bytes, until: float, result: Result) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < until:
            start = time.perf_counter()
            writer.write(request)
            status, headers = await _read_response(reader)
            elapsed = time.perf_counter() - start
            if status >= 400:
                result.errors += 1
                continue
            result.latencies.append(elapsed)
            overhead = headers.get(b"x-cfai-overhead-ms")
            if overhead is not None:
                result.overhead_ms.append(float(overhead))
    finally:
        writer.close()


def build_request(url: str, body: bytes, headers: dict[str, str]) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    lines = [f"POST {parts.path or '/'} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
    return host, port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def run(url: str, body: bytes, *, connections: int, seconds: float,
              headers: dict[str, str] | None = None) -> Result:
    host, port, request = build_request(url, body, headers or {})
    result = Result()
    start = time.perf_counter()
    until = start + seconds
    await asyncio.gather(*(_worker(host, port, request, until, result) for _ in range(connections)))
    result.seconds = time.perf_counter() - start
    return result


def run_sync(url: str, body: bytes, **kwargs: object) -> Result:
    try:
        import uvloop
        return uvloop.run(run(url, body, **kwargs))  # type: ignore[arg-type]
    except ImportError:
        return asyncio.run(run(url, body, **kwargs))  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True, help="JSON request body")
    parser.add_argument("-c", "--connections", type=int, default=1)
    parser.add_argument("-d", "--seconds", type=float, default=5.0)
    parser.add_argument("-H", "--header", action="append", default=[], help="'Name: value' (repeatable)")
    args = parser.parse_args()
    headers = dict(h.split(":", 1) for h in args.header)
    result = run_sync(args.url, args.body.encode(), connections=args.connections, seconds=args.seconds,
                      headers={k.strip(): v.strip() for k, v in headers.items()})
    print(json.dumps({"requests": len(result.latencies), "errors": result.errors, "rps": round(result.rps, 1),
                      "p50_ms": round(result.pct(50), 3), "p99_ms": round(result.pct(99), 3)}))


if __name__ == "__main__":
    main()
