"""A client for OpenAI-compatible providers (OpenAI, Groq, OpenRouter, vLLM, Ollama, Gemini): the router's
failover targets.

Pass-through: a JSON body in, the decoded JSON object (or the SSE events' JSON payloads, a list per read)
out; no translation and no retries. Deadlines, error mapping and key scrubbing are upstream.http_api's.
Imports httpx, stdlib, errors, upstream.provider (the ChatUpstream it is) and upstream.http_api.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any

import httpx

from cfai_cli.upstream.http_api import HttpApiClient
from cfai_cli.upstream.provider import ChatUpstream


class OpenAICompatClient(HttpApiClient, ChatUpstream):
    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        api_key: str | None,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 256,
        fast_http: bool = True,
    ) -> None:
        auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        super().__init__(name=name, base_url=base_url, headers=auth, secret=api_key, timeout=timeout,
                         transport=transport, max_connections=max_connections, fast_http=fast_http,
                         example_url="https://api.groq.com/openai/v1")

    async def chat(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.post_json("/chat/completions", body)

    async def chat_stream(self, body: Mapping[str, Any]) -> AsyncGenerator[list[dict[str, Any]], None]:
        return await self.stream("/chat/completions", body)

    async def stream(
        self, path: str, body: Mapping[str, Any], *, timeout: float | None = None
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Open a streaming POST (the caller sets "stream": true in body).

        Status and content type are checked before this returns, so failures raise here, where the router can
        still fail over. Returns an async generator of the SSE `data:` events' JSON payloads, a list per read
        from the network, ending at `data: [DONE]`; the response is closed when it finishes, raises, or is
        closed early.
        """
        return await self.open_stream(path, body, end_data="[DONE]", timeout=timeout)
