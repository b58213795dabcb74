"""Several fake upstreams behind one httpx transport: Cloudflare accounts (by account id in the URL) and
OpenAI-compatible and Anthropic providers (by host), each with scripted behaviour, and a log of who was called.

Cloudflare accounts are `FakeWorkers` tables (tests/fake_workers.py), so the real client code runs; a
provider is a handler taking the request and its JSON body.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.fake_workers import FakeWorkers

Provider = Callable[[httpx.Request, dict[str, Any]], httpx.Response | Awaitable[httpx.Response]]


def openai_completion(text: str | None, *, model: str, tool_calls: list[dict[str, Any]] | None = None
                      ) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"id": "chatcmpl-provider", "object": "chat.completion", "created": 1700000000, "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": "tool_calls" if tool_calls else "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}}


def openai_chunks(model: str, deltas: list[dict[str, Any]], finish: str = "stop") -> bytes:
    base = {"id": "chatcmpl-provider", "object": "chat.completion.chunk", "created": 1700000000, "model": model}
    events = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    return b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"


@dataclass
class FakeUpstreams:
    accounts: dict[str, FakeWorkers] = field(default_factory=dict)
    providers: dict[str, Provider] = field(default_factory=dict)
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (account id or host, token, model)

    def account(self, account_id: str) -> FakeWorkers:
        return self.accounts.setdefault(account_id, FakeWorkers())

    def who(self) -> list[str]:
        """Who was asked to run a model, in order (model searches for "did you mean" left out)."""
        return [f"{where}/{token}" for where, token, model in self.calls if model != "(search)"]

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        # Bearer for Cloudflare and OpenAI-compatible APIs, x-api-key for Anthropic.
        token = request.headers.get("authorization", "").removeprefix("Bearer ") or request.headers.get("x-api-key", "")
        path = request.url.path
        if "/accounts/" in path:
            account = path.split("/accounts/", 1)[1].split("/", 1)[0]
            fake = self.accounts[account]
            model = path.split("/ai/run/", 1)[1] if "/ai/run/" in path else "(search)"
            self.calls.append((account, token, model))
            found = fake.models.get(model)
            if found is not None and _is_async(found):
                body = json.loads(request.content or b"{}")
                fake.calls.append((model, body))
                return await found(request, body)  # type: ignore[misc, no-any-return]
            return fake(request)
        body = json.loads(request.content or b"{}")
        self.calls.append((request.url.host, token, str(body.get("model"))))
        answer = self.providers[request.url.host](request, body)
        return await answer if isinstance(answer, Awaitable) else answer

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def _is_async(handler: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(handler)
