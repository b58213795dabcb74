"""A stand-in Workers AI over real HTTP, for tests that start a real `cfai serve`: it bills every call a known
amount and reports it on some calls only.

Every call of a text model uses PROMPT_TOKENS and COMPLETION_TOKENS and costs what they cost at the model's
published prices (core.catalog, the table cfai estimates from), as Cloudflare prices from neurons. Streams
report it in a `cf-ai-neurons` header (read when the stream opens); other answers report it on every other
call, and cfai estimates the rest from their `usage`, so a call costs `cost(model)` either way. A prompt
that says "slow" streams for a few seconds (a client can leave in the middle).
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Self

from cfai_cli.core.catalog import PUBLISHED_PRICES
from cfai_cli.core.cost import Units, estimate_neurons

PROMPT_TOKENS, COMPLETION_TOKENS = 1000, 500
SLOW_EVENTS, SLOW_GAP = 40, 0.1


def cost(model: str) -> float:
    """Neurons one call of `model` costs (what cfai estimates for its usage, and what the header says)."""
    return estimate_neurons(PUBLISHED_PRICES[model], Units(input_tokens=PROMPT_TOKENS, output_tokens=COMPLETION_TOKENS))


def stream_billed(handler: http.server.BaseHTTPRequestHandler, usage: dict[str, Any], headers: dict[str, str], *,
                  slow: bool, slow_events: int = SLOW_EVENTS) -> None:
    """A billed Workers AI stream: three events (SLOW_EVENTS, SLOW_GAP apart, when `slow`), then the usage and
    [DONE]; a client leaving in the middle is not an error."""
    handler.send_response(200)
    for name, value in {"content-type": "text/event-stream", **headers}.items():
        handler.send_header(name, value)
    handler.end_headers()  # no length: the body ends when the connection closes (HTTP/1.0)
    events = [{"response": "w "} for _ in range(slow_events if slow else 3)]
    try:
        for event in [*events, {"response": "", "usage": usage}]:
            handler.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
            handler.wfile.flush()
            if slow:
                time.sleep(SLOW_GAP)
        handler.wfile.write(b"data: [DONE]\n\n")
    except OSError:  # cfai hung up (its client left)
        pass


class LocalServer:
    """A stand-in Workers AI on a threaded HTTP server on loopback: its base URL, and running it in a thread.

    Subclasses hand their request handler to `listen` in their constructor."""

    server: http.server.ThreadingHTTPServer

    def listen(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self.server = _BurstServer(("127.0.0.1", 0), handler)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/client/v4"

    @contextmanager
    def running(self) -> Iterator[Self]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


class _BurstServer(http.server.ThreadingHTTPServer):
    request_queue_size = 128  # bursts of concurrent requests from two workers or two replicas
    daemon_threads = True


class BillingWorkersAI(LocalServer):
    def __init__(self, *, delay: float = 0.3) -> None:
        self.delay = delay  # seconds each answer takes: concurrent requests overlap
        self.calls = 0
        self.reported = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # the catalogue: empty (cfai prices from its own table)
                self._json({"result": [], "success": True, "errors": [], "messages": [], "result_info": {}}, {})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"{}")
                model = self.path.split("/ai/run/", 1)[1]
                with outer.lock:
                    outer.calls += 1
                    report = bool(body.get("stream")) or outer.calls % 2 == 1
                    outer.reported += report
                time.sleep(outer.delay)
                headers = {"cf-ai-neurons": repr(cost(model))} if report else {}
                usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                         "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}
                if body.get("stream"):
                    self._stream(usage, headers, slow="slow" in json.dumps(body.get("messages")))
                else:
                    self._json({"result": {"response": "ok", "usage": usage}, "success": True, "errors": [],
                                "messages": []}, headers)

            def _json(self, payload: dict[str, Any], headers: dict[str, str]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200)
                for name, value in {"content-type": "application/json", "content-length": str(len(data)),
                                    **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, usage: dict[str, Any], headers: dict[str, str], *, slow: bool) -> None:
                stream_billed(self, usage, headers, slow=slow)

        self.listen(Handler)

