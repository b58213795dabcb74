"""A stand-in Workers AI over real HTTP for the two replicas: two Cloudflare accounts behind one API base.

Chat calls are billed as tests/billing_workers.py bills them (a known cost per call, reported in a header on
some calls and estimated by cfai on the others), and a prompt saying "slow" streams for a few seconds. Account
QUOTA_ACCOUNT answers QUOTA_MODEL with Workers AI's daily-allocation error (429, code 4006: reference §1.3,
tests/fixtures/workers/error_4006_daily_quota.json), the other account serves it. Image models answer through
the offline emulator's own code. Every call is recorded as (account, model), so a test can tell which account a
replica chose.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from pathlib import Path
from typing import Any

from cfai_cli.emulator import images
from tests.billing_workers import COMPLETION_TOKENS, PROMPT_TOKENS, LocalServer, cost, stream_billed

QUOTA_ACCOUNT, OTHER_ACCOUNT = "acct0001", "acct0002"
QUOTA_MODEL = "@cf/meta/llama-3.2-3b-instruct"
QUOTA_BODY = (Path(__file__).parents[1] / "fixtures" / "workers" / "error_4006_daily_quota.json").read_bytes()
SLOW_EVENTS = 30  # a slow stream: 3 s of events, SLOW_GAP apart (tests.billing_workers)


class StandIn(LocalServer):
    def __init__(self, *, delay: float = 0.2) -> None:
        self.delay = delay  # seconds each chat answer takes: concurrent requests overlap
        self.calls: list[tuple[str, str]] = []  # (account, model), in arrival order
        self.bodies: list[dict[str, Any]] = []  # their JSON bodies, in the same order
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # the catalogue: empty (cfai prices from its own table)
                self._send(200, json.dumps({"result": [], "success": True, "errors": [], "messages": [],
                                            "result_info": {}}).encode(), {})

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", "0")))
                account = self.path.split("/accounts/", 1)[1].split("/", 1)[0]
                model = self.path.split("/ai/run/", 1)[1].split("?", 1)[0]
                body = json.loads(raw or b"{}")
                with outer.lock:
                    outer.calls.append((account, model))
                    outer.bodies.append(body)
                    odd = len(outer.calls) % 2 == 1
                if account == QUOTA_ACCOUNT and model == QUOTA_MODEL:
                    self._send(429, QUOTA_BODY, {"content-type": "application/json"})
                elif model in images.MODELS:
                    answer = images.run(model, body)
                    self._send(answer.status_code, bytes(answer.body),
                               {"content-type": answer.headers["content-type"]})
                else:
                    self._chat(model, body, report=bool(body.get("stream")) or odd)

            def _chat(self, model: str, body: dict[str, Any], *, report: bool) -> None:
                time.sleep(outer.delay)
                headers = {"cf-ai-neurons": repr(cost(model))} if report else {}
                usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                         "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}
                if not body.get("stream"):
                    self._send(200, json.dumps({"result": {"response": "ok", "usage": usage}, "success": True,
                                                "errors": [], "messages": []}).encode(),
                               {"content-type": "application/json", **headers})
                    return
                stream_billed(self, usage, headers, slow="slow" in json.dumps(body.get("messages")),
                              slow_events=SLOW_EVENTS)

            def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in {"content-length": str(len(data)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self.listen(Handler)

    def calls_since(self, start: int) -> list[tuple[str, str]]:
        with self.lock:
            return list(self.calls[start:])

