"""A fake Workers AI for proxy and client tests: a readable table of model -> behaviour.

Built from ../shared/reference/workers-ai.md (envelopes §1.2–1.3, native and chat dialects §2.3/§2.7,
streams §2.6). Used through httpx.MockTransport, so the real upstream client code runs unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

Handler = Callable[[httpx.Request, dict[str, Any]], httpx.Response]


def envelope(result: Any) -> dict[str, Any]:
    return {"result": result, "success": True, "errors": [], "messages": []}


def error_envelope(code: int | str, message: str) -> dict[str, Any]:
    return {"result": {}, "success": False, "errors": [{"code": code, "message": message}], "messages": []}


def sse(*events: Any, done: bool = True) -> bytes:
    out = b"".join(f"data: {json.dumps(e) if not isinstance(e, str) else e}\n\n".encode() for e in events)
    return out + (b"data: [DONE]\n\n" if done else b"")


def sse_response(body: bytes | Iterator[bytes], status: int = 200) -> httpx.Response:
    return httpx.Response(status, headers={"content-type": "text/event-stream"}, content=body)


def native_text(text: str, *, prompt_tokens: int = 7) -> Handler:
    words = text.split(" ")

    def handle(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                 "total_tokens": prompt_tokens + len(words)}
        if body.get("stream"):
            pieces = [{"response": w if i == 0 else " " + w, "p": "abc"} for i, w in enumerate(words)]
            return sse_response(sse(*pieces, {"response": "", "usage": usage}))
        return httpx.Response(200, json=envelope({"response": text, "usage": usage}))

    return handle


def native_tool_call(name: str, arguments: dict[str, Any]) -> Handler:
    def handle(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        usage = {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}
        if body.get("stream"):
            return sse_response(sse({"response": "", "p": "x"},
                                    {"tool_calls": [{"name": name, "arguments": arguments}]},
                                    {"response": "", "usage": usage}))
        return httpx.Response(200, json=envelope(
            {"response": None, "tool_calls": [{"name": name, "arguments": arguments}], "usage": usage}))

    return handle


def chat_dialect_tool_call(name: str, arguments: str) -> Handler:
    """A vLLM-served model: OpenAI chunks with the arguments in fragments."""

    def handle(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        base = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": "m"}
        if body.get("stream"):
            half = len(arguments) // 2
            deltas = [
                {"role": "assistant", "reasoning_content": "Need the tool."},
                {"tool_calls": [{"index": 0, "id": "chatcmpl-tool-1", "type": "function",
                                 "function": {"name": name, "arguments": ""}}]},
                {"tool_calls": [{"index": 0, "function": {"arguments": arguments[:half]}}]},
                {"tool_calls": [{"index": 0, "function": {"arguments": arguments[half:]}}]},
            ]
            events = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
            events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
                           "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}})
            return sse_response(sse(*events))
        return httpx.Response(200, json=envelope({
            **base, "object": "chat.completion",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": None, "reasoning_content": "Need the tool.",
                "tool_calls": [{"id": "chatcmpl-tool-1", "type": "function",
                                "function": {"name": name, "arguments": arguments}}]}}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}}))

    return handle


def fixed(status: int, body: bytes | dict[str, Any], content_type: str = "application/json",
          headers: dict[str, str] | None = None) -> Handler:
    def handle(request: httpx.Request, parsed: dict[str, Any]) -> httpx.Response:
        content = json.dumps(body).encode() if isinstance(body, dict) else body
        return httpx.Response(status, headers={"content-type": content_type, **(headers or {})}, content=content)

    return handle


CATALOGUE = [
    {"id": "u1", "name": "@cf/meta/llama-3.3-70b-instruct-fp8-fast", "description": "Llama 3.3 70B",
     "task": {"id": "t", "name": "Text Generation"}, "created_at": "2024-12-06 17:09:18.338",
     "properties": [{"property_id": "context_window", "value": "24000"},
                    {"property_id": "function_calling", "value": "true"}]},
    {"id": "u2", "name": "@cf/meta/llama-3.1-8b-instruct-fast", "description": "Llama 3.1 8B fast",
     "task": {"id": "t", "name": "Text Generation"}, "created_at": "2024-07-01 00:00:00.000",
     "properties": [{"property_id": "beta", "value": "true"}]},
    {"id": "u3", "name": "@cf/zai-org/glm-4.7-flash", "description": "GLM",
     "task": {"id": "t", "name": "Text Generation"}, "created_at": "2026-01-01 00:00:00.000",
     "properties": [{"property_id": "context_window", "value": 131072},
                    {"property_id": "reasoning", "value": "true"}]},
]


@dataclass
class FakeWorkers:
    """Routes /ai/run/{model} to a handler per model and serves a small catalogue."""

    models: dict[str, Handler] = field(default_factory=dict)
    catalogue: list[dict[str, Any]] = field(default_factory=lambda: list(CATALOGUE))
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    headers_seen: list[httpx.Headers] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.headers_seen.append(request.headers)
        path = request.url.path
        if path.endswith("/ai/models/search"):
            return httpx.Response(200, json={**envelope(self.catalogue), "result_info": {"page": 1}})
        marker = "/ai/run/"
        model = path[path.index(marker) + len(marker):]
        is_json = request.headers.get("content-type", "").startswith("application/json")
        body = json.loads(request.content or b"{}") if is_json else {}  # multipart/raw: handlers read request
        self.calls.append((model, body))
        handler = self.models.get(model)
        if handler is None:
            return httpx.Response(400, json=error_envelope(
                5007, f"AiError: No such model: No such model {model} or task (1b2c3d4e-aaaa)"))
        return handler(request, body)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)
