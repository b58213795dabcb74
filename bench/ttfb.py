"""Time to first byte of a streamed answer: send to the first `data:` event, one request at a time.

Standard library only (blocking sockets: the cheapest client Python has, so the client adds least to the
figure). Each keep-alive request is timed from its send to the arrival of the first SSE event, then read to
its end. Against `bench/fake_upstream.py --stream-gap-ms N` (the first event, then the rest N ms later) the
time to the first event shows what the proxy adds before the answer starts, apart from the stream's length.

    python bench/ttfb.py --url http://127.0.0.1:3000/v1/chat/completions \
        --body '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true}' -n 500
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import time

from loadgen import build_request


def _read_head(sock: socket.socket, buffer: bytes) -> tuple[bytes, bytes]:
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    return head, rest


def ttfb(url: str, body: bytes, headers: dict[str, str], *, requests: int, warmup: int = 50,
         pause: float = 0.0) -> list[float]:
    """Seconds from send to the first `data:` byte, for `requests` requests on one keep-alive connection (for
    an answer that is not an event stream, e.g. a JSON one, to its last byte); `pause`: seconds idle before each
    send."""
    host, port, request = build_request(url, body, headers)
    out: list[float] = []
    with socket.create_connection((host, port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(warmup + requests):
            if pause:
                time.sleep(pause)
            start = time.perf_counter()
            sock.sendall(request)
            head, buffer = _read_head(sock, b"")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"not 200: {head[:200]!r}")
            chunked = b"transfer-encoding: chunked" in head.lower()
            events = b"text/event-stream" in head.lower()
            while events and b"data:" not in buffer:
                buffer += sock.recv(65536)
            first = time.perf_counter() - start
            # Read to the end of this response: the chunked terminator, or the content length.
            if chunked:
                while not buffer.endswith(b"0\r\n\r\n"):
                    buffer += sock.recv(65536)
            else:
                length = int(next(line.split(b":")[1] for line in head.lower().split(b"\r\n")
                                  if line.startswith(b"content-length:")))
                while len(buffer) < length:
                    buffer += sock.recv(65536)
            if not events:
                first = time.perf_counter() - start
            if i >= warmup:
                out.append(first)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True, help="JSON request body (a streamed request)")
    parser.add_argument("-n", "--requests", type=int, default=500)
    parser.add_argument("--pause-ms", type=float, default=0.0, help="idle before each send (default 0)")
    parser.add_argument("-H", "--header", action="append", default=[], help="'Name: value' (repeatable)")
    args = parser.parse_args()
    headers = {k.strip(): v.strip() for k, v in (h.split(":", 1) for h in args.header)}
    times = ttfb(args.url, args.body.encode(), headers, requests=args.requests, pause=args.pause_ms / 1000)
    print(json.dumps({"requests": len(times), "ttfb_p50_ms": round(statistics.median(times) * 1000, 3),
                      "ttfb_p90_ms": round(sorted(times)[int(len(times) * 0.9)] * 1000, 3)}))


if __name__ == "__main__":
    main()
