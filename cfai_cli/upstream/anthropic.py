"""A client for the Anthropic Messages API as a failover target: `chat`/`chat_stream` translate OpenAI chat
requests and answers (core.translate.anthropic_egress), `messages`/`messages_stream` pass Messages bodies
through untranslated (for requests that arrived as Anthropic Messages).

Deadlines, error mapping (529 overloaded_error is a capacity failure) and key scrubbing are
upstream.http_api's; no retries (the router fails over). A stream must end with `message_stop`, else it
ended early; an `error` event mid-stream is an UpstreamStreamError. Imports httpx, stdlib, errors, core,
upstream.provider and upstream.http_api.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any, TypeVar

import httpx

from cfai_cli.core.translate.anthropic_egress import chat_names, from_message, to_messages_request
from cfai_cli.core.translate.anthropic_egress_stream import ChunkStream
from cfai_cli.errors import UpstreamError
from cfai_cli.upstream.http_api import HttpApiClient
from cfai_cli.upstream.provider import ChatUpstream

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_VERSION = "2023-06-01"
Event = tuple[str, dict[str, Any]]  # (event name, its data)
T = TypeVar("T")


class AnthropicClient(HttpApiClient, ChatUpstream):
    def __init__(
        self,
        *,
        name: str,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        version: str = DEFAULT_VERSION,
        extra_fields: frozenset[str] = frozenset(),
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 256,
        fast_http: bool = True,
    ) -> None:
        super().__init__(name=name, base_url=base_url, headers={"x-api-key": api_key, "anthropic-version": version},
                         secret=api_key, timeout=timeout, transport=transport, max_connections=max_connections,
                         fast_http=fast_http, example_url=DEFAULT_BASE_URL)
        self._extra = extra_fields  # request fields copied into the Messages body as the client sent them

    # ---- OpenAI chat, translated -----------------------------------------------------------------

    async def chat(self, body: Mapping[str, Any]) -> dict[str, Any]:
        message = await self.messages(to_messages_request({**body, "stream": False}, self._extra))
        content = message.get("content")
        if message.get("type") != "message" or not isinstance(content, list) or not all(
                isinstance(block, dict) and (block.get("type") != "tool_use" or {"id", "name"} <= block.keys())
                for block in content):
            raise UpstreamError(f"{self.name} answered with JSON that is not a Messages `message`: "
                                f"{self._excerpt(str(message))}")
        return from_message(message, created=int(time.time()), names=chat_names(body))

    async def chat_stream(self, body: Mapping[str, Any]) -> AsyncGenerator[list[dict[str, Any]], None]:
        events = await self.open_stream("/v1/messages", to_messages_request({**body, "stream": True}, self._extra),
                                        end_type="message_stop")
        stream = ChunkStream(created=int(time.time()), names=chat_names(body))
        return await _mapped(events, lambda batch: [chunk for data in batch
                                                    for chunk in stream.feed(str(data.get("type")), data)])

    # ---- Messages, passed through ----------------------------------------------------------------

    async def messages(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST /v1/messages; the `message` object."""
        return await self.post_json("/v1/messages", body)

    async def messages_stream(self, body: Mapping[str, Any]) -> AsyncGenerator[list[Event], None]:
        """Open a streamed POST /v1/messages (`stream: true` in body): its (event name, data) pairs, a list per
        read, up to `message_stop`; failures before the stream opens raise here (the router can fail over)."""
        events = await self.open_stream("/v1/messages", body, end_type="message_stop")
        return await _mapped(events, lambda batch: [(str(data.get("type")), data) for data in batch])


async def _mapped(source: AsyncGenerator[list[dict[str, Any]], None],
                  convert: Callable[[list[dict[str, Any]]], list[T]]) -> AsyncGenerator[list[T], None]:
    """`source`'s batches converted, started (so that closing it closes `source` even if it is never read)."""
    async def mapped() -> AsyncGenerator[list[T], None]:
        try:
            yield []  # consumed below
            async for batch in source:
                yield convert(batch)
        finally:
            await source.aclose()

    out = mapped()
    await anext(out)
    return out
