"""The Workers AI account's endpoints other than running a model: the async batch queue (`queue`, `poll_queue`),
the model catalogue (`models_search`, `models_page`) and the token check (`verify_token`), as `AccountCalls`,
which upstream.workers' `WorkersAIClient` is: the same URLs, headers, transport and retries as its model calls.

Imports stdlib, errors, core and upstream (httpx when a call is made: these calls are built as httpx requests).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from cfai_cli.core import jsonfast
from cfai_cli.core.workers.envelope import decode_json_result
from cfai_cli.errors import RequestTooLarge, UpstreamError
from cfai_cli.upstream.whole import aread
from cfai_cli.upstream.workers_answers import timeouts
from cfai_cli.upstream.workers_heads import ClientHeaders

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")
# Workers AI takes an async batch whose payload is under 10 MB (reference §2.11, §10); read as decimal megabytes,
# the stricter reading.
MAX_QUEUE_BYTES = 10_000_000


class _Client(Protocol):
    """What these calls use of the client they are part of (upstream.workers.WorkersAIClient)."""

    _api_base: str
    _base: str
    _h: ClientHeaders

    @property
    def _transport(self) -> httpx.AsyncBaseTransport: ...

    async def _with_retries(self, attempt: Callable[[float], Awaitable[T]], *,
                            deadline: float | None = None) -> T: ...

    async def _json_answer(self, request: httpx.Request, model: str,
                           vectors: bool | Literal["text"] = False) -> Any: ...

    async def _post_json(self, url: str, payload: bytes, model: str) -> Any: ...

    async def get_json(self, url: str, params: Mapping[str, str | int] | None = None) -> Any: ...


class AccountCalls:
    """The account's endpoints besides `/ai/run` of a model (see the module docstring)."""

    async def queue(self: _Client, model: str, requests: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """POST /ai/run/{model}?queueRequest=true with `{"requests": [...]}` (Workers AI's async batch, reference
        §2.11): the unwrapped `result`, `{"status": "queued", "request_id": ..., "model": ...}`. A payload of
        MAX_QUEUE_BYTES or more is refused here (413) before it is sent: Workers AI takes less than 10 MB."""
        payload = jsonfast.dumps({"requests": list(requests)})
        if len(payload) >= MAX_QUEUE_BYTES:
            raise RequestTooLarge(f"An async batch of {len(payload):,} bytes is too large: Workers AI takes less "
                                  f"than {MAX_QUEUE_BYTES:,} bytes in one queued request.")
        result = await self._post_json(f"{self._base}/run/{model}?queueRequest=true", payload, model)
        if not isinstance(result, dict) or not isinstance(result.get("request_id"), str) or not result["request_id"]:
            raise UpstreamError(f"Workers AI did not queue the batch for {model} (its answer has no request_id).")
        return result

    async def poll_queue(self: _Client, model: str, request_id: str) -> dict[str, Any]:
        """POST `{"request_id": ...}` to /ai/run/{model}?queueRequest=true: the unwrapped `result` of an async
        batch, `{"status": "queued" | "running", ...}` or, when done, `{"responses": [...], "usage": {...}}`
        (core.workers.queue reads both). Polling changes nothing upstream, so it is retried like any call."""
        payload = jsonfast.dumps({"request_id": request_id})
        result = await self._post_json(f"{self._base}/run/{model}?queueRequest=true", payload, model)
        if not isinstance(result, dict):
            raise UpstreamError(f"Workers AI answered the poll of batch {request_id} with something other "
                                "than an object.")
        return result

    async def _post_json(self: _Client, url: str, payload: bytes, model: str) -> Any:
        """POST a JSON payload already encoded; the unwrapped `result` (neurons it reports noted)."""
        import httpx

        async def attempt(remaining: float) -> Any:
            return await self._json_answer(httpx.Request("POST", url, content=payload, headers=self._h.json(),
                                                         extensions=timeouts(remaining)), model)

        return await self._with_retries(attempt)

    async def models_search(self: _Client, params: Mapping[str, str | int]) -> list[dict[str, Any]]:
        """Every page of GET /ai/models/search."""
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            result = await self.get_json(f"{self._base}/models/search", {**params, "page": page, "per_page": 100})
            if not isinstance(result, list):
                raise UpstreamError("Workers AI answered the model search with something other than a list.")
            items.extend(item for item in result if isinstance(item, dict))
            if len(result) < 100 or page >= 50:
                return items
            page += 1

    async def get_json(self: _Client, url: str, params: Mapping[str, str | int] | None = None) -> Any:
        """GET a Cloudflare API URL with this client's token (model search, `cfai doctor`); the unwrapped `result`."""
        import httpx

        async def attempt(remaining: float) -> Any:
            request = httpx.Request("GET", url, params=params, headers=self._h.plain(), extensions=timeouts(remaining))
            response = await self._transport.handle_async_request(request)
            try:
                raw = await aread(response)
            finally:
                await response.aclose()
            return decode_json_result(response.status_code, response.headers.get("content-type", ""), raw,
                                      response.headers)

        return await self._with_retries(attempt)

    async def verify_token(self: _Client) -> Any:
        """GET {api_base}/user/tokens/verify: the token's id and status ("active") when Cloudflare knows it."""
        return await self.get_json(f"{self._api_base}/user/tokens/verify")

    async def models_page(self: _Client, per_page: int = 1) -> Any:
        """One small page of GET /ai/models/search: the cheapest call that needs Workers AI read access."""
        return await self.get_json(f"{self._base}/models/search", {"per_page": per_page})
