"""Running one batch line as the batch's key would run it live: the same services, policy, limits and accounting.

Imports service, store, core and errors. A line's body goes through the same request model and service
function as the live route (`create_chat_completion`, `create_embeddings`, ...), with a record granted the
key's model patterns and rate limits (service.grants), so aliases, translation, failover and a forbidden
model (a 403 for that line) behave exactly as they do live. What differs is the pace: the key's rpm/rpd/tpm
and Workers AI's own 429s make a line *wait* (Retry-After) and try again instead of failing, and a budget
refusal ends the batch's remaining lines as `insufficient_quota` (BudgetExhausted). Each attempt that ran
leaves a usage row (route `batch/<endpoint>`), settles its budget hold (service.grants) with its neurons and
adds its tokens to the key's TPM window, as Observe does for a live request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from cfai_cli.core.cache import request_mode
from cfai_cli.core.caps import check_embedding_inputs
from cfai_cli.core.cost import usd_of_neurons
from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.chat import ChatCompletionRequest
from cfai_cli.core.openai.completions import CompletionRequest
from cfai_cli.core.openai.embeddings import EmbeddingRequest
from cfai_cli.core.openai.responses import CreateResponseRequest
from cfai_cli.errors import (
    AuthenticationError,
    CfaiError,
    CoordinationUnavailable,
    InvalidRequest,
    QuotaExceeded,
    RateLimited,
    UpstreamError,
)
from cfai_cli.service.chat import create_chat_completion
from cfai_cli.service.completions import create_completion
from cfai_cli.service.context import Context
from cfai_cli.service.cost import settle
from cfai_cli.service.embeddings import create_embeddings
from cfai_cli.service.grants import grant
from cfai_cli.service.record import RequestRecord
from cfai_cli.service.responses import create_response
from cfai_cli.store.budgets import BudgetLedger, Budgets
from cfai_cli.store.keys import KeyRecord, KeyStore
from cfai_cli.store.limit_rule import RateLimits
from cfai_cli.store.limits import RateLimiter
from cfai_cli.store.usage import UsageRow

log = logging.getLogger("cfai.batch")
Json = dict[str, Any]
MAX_WAIT = 60.0  # one wait for a rate window; the line asks again after it (and the batch may end meanwhile)


def _no_stream(stream: bool | None) -> None:
    if stream:
        raise InvalidRequest("Streaming is not available in a batch: leave `stream` unset.", param="stream",
                             code="unsupported_value")


async def _chat(ctx: Context, body: Json, owner: str | None) -> Any:
    req = validate_request(ChatCompletionRequest, body)
    _no_stream(req.stream)
    return await create_chat_completion(ctx, req)


async def _embeddings(ctx: Context, body: Json, owner: str | None) -> Any:
    req = validate_request(EmbeddingRequest, body)
    check_embedding_inputs(len(req.texts()))
    return await create_embeddings(ctx, req)


async def _completions(ctx: Context, body: Json, owner: str | None) -> Any:
    req = validate_request(CompletionRequest, body)
    _no_stream(req.stream)
    return await create_completion(ctx, req)


async def _responses(ctx: Context, body: Json, owner: str | None) -> Any:
    req = validate_request(CreateResponseRequest, body)
    _no_stream(req.stream)
    return await create_response(ctx, req, owner=owner)


Handler = Callable[[Context, Json, str | None], Awaitable[Any]]
HANDLERS: dict[str, Handler] = {"/v1/chat/completions": _chat, "/v1/embeddings": _embeddings,
                                "/v1/completions": _completions, "/v1/responses": _responses}


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int
    body: Any
    tokens: tuple[int, int] = (0, 0)

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300


class BudgetExhausted(Exception):
    """The key's budget refused a line: the batch's remaining lines fail with this error body."""

    def __init__(self, error: CfaiError) -> None:
        super().__init__(error.message)
        self.error = error


def _code(outcome: Outcome) -> str | None:
    if outcome.ok or not isinstance(outcome.body, dict) or not isinstance(outcome.body.get("error"), dict):
        return None
    code = outcome.body["error"].get("code")
    return None if code is None else str(code)


class LineRunner:
    """Runs lines for keys; `sink` takes each usage row (the proxy's recorder, or a direct write)."""

    def __init__(self, ctx: Context, *, sink: Callable[[UsageRow], None], keys_required: bool,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, limiter: RateLimits | None = None,
                 ledger: Budgets | None = None) -> None:
        self.ctx = ctx
        database = ctx.settings.database
        self.keys = KeyStore(ctx.settings.storage)
        self.ledger: Budgets = ledger or BudgetLedger(database)
        self.limiter: RateLimits = limiter or RateLimiter(database)
        self.sink = sink
        self.keys_required = keys_required
        self.sleep = sleep
        self.calls = 0  # lines handed to a service (attempts included): what tests count

    async def _key(self, owner: str | None) -> KeyRecord | None:
        if owner is None:
            if self.keys_required:
                raise AuthenticationError("This batch has no key to run as.")
            return None
        key = await anyio.to_thread.run_sync(self.keys.get, owner)
        if key is None or not key.active(time.time()):
            raise AuthenticationError("The key that created this batch was revoked or has expired.")
        return key

    async def _admit(self, key: KeyRecord) -> float:
        """0 when the key may send a request now (the request is counted), else the seconds to wait."""
        policy = key.policy
        try:
            if policy.budgeted:
                refusal = await self.ledger.check(key.id, per_day=policy.budget_neurons_per_day,
                                                  per_month_usd=policy.budget_usd_per_month, now=time.time())
                if refusal is not None:
                    raise BudgetExhausted(QuotaExceeded(refusal.message, retry_after=refusal.retry_after))
            if not policy.limited:
                return 0.0
            decision = await self.limiter.admit(key.id, policy, now=time.time())
        except CoordinationUnavailable as exc:  # Redis down, failing closed: the line waits, it does not fail
            return exc.retry_after or 1.0
        return 0.0 if decision.allowed else max(decision.retry_after, 0.05)

    async def run(self, endpoint: str, body: Json, *, owner: str | None,
                  stopped: Callable[[], bool]) -> Outcome | None:
        """The line's outcome; None if `stopped()` became true while it waited for a rate window."""
        try:
            key = await self._key(owner)
        except CfaiError as exc:
            return Outcome(exc.status, exc.to_openai())
        while True:
            if stopped():
                return None
            if key is not None:
                wait = await self._admit(key)
                if wait:
                    await self.sleep(min(wait, MAX_WAIT))
                    continue
            outcome, retry = await self._attempt(endpoint, body, key)
            if retry is None:
                return outcome
            await self.sleep(min(retry, MAX_WAIT))

    async def _attempt(self, endpoint: str, body: Json, key: KeyRecord | None) -> tuple[Outcome, float | None]:
        """One try: (outcome, None), or (refusal, seconds to wait) when a rate limit said not yet."""
        record = RequestRecord()
        settings = self.ctx.settings
        if key is not None:
            grant(record, key, self.limiter, self.ledger, cache=lambda: self.ctx.cache)
        route = endpoint.removeprefix("/v1/")
        if settings.cache.enabled:
            record.cache_mode = request_mode(settings.cache, route=route, header=None,
                                             key_opted_in=bool(key and key.policy.cache))
        ctx = self.ctx.for_request(record)
        started = time.perf_counter()
        retry: float | None = None
        budget: QuotaExceeded | None = None
        self.calls += 1
        try:
            result = await HANDLERS[endpoint](ctx, body, key.id if key else None)
            outcome = Outcome(200, result, (record.prompt_tokens, record.completion_tokens))
        except QuotaExceeded as exc:
            budget = exc
            outcome = Outcome(exc.status, exc.to_openai())
        except RateLimited as exc:
            retry = exc.retry_after if exc.retry_after is not None else 1.0
            outcome = Outcome(exc.status, exc.to_openai())
        except CfaiError as exc:
            exc.message = ctx.router.scrubber.text(exc.message)
            outcome = Outcome(exc.status, exc.to_openai())
        except Exception as exc:  # the line's boundary, as the server's error handler is a request's
            log.error("batch line failed: %s", type(exc).__name__, exc_info=(type(exc), exc, exc.__traceback__))
            outcome = Outcome(500, UpstreamError("The request failed inside the proxy.",
                                                 code="internal_error").to_openai())
        with anyio.CancelScope(shield=True):  # an attempt that ran is accounted for, even when stopped
            await self._account(record, key, route, time.perf_counter() - started, ctx, outcome)
        if budget is not None:
            raise BudgetExhausted(budget)
        return outcome, retry

    async def _account(self, record: RequestRecord, key: KeyRecord | None, route: str, seconds: float,
                       ctx: Context, outcome: Outcome) -> None:
        settle(record, ctx.cache)
        self.sink(UsageRow(
            ts=time.time(), key_id=key.id if key else None, route=f"batch/{route}", model=record.asked,
            upstream_model=record.model, status=outcome.status_code, prompt_tokens=record.prompt_tokens,
            completion_tokens=record.completion_tokens, latency_ms=round(seconds * 1000, 2), bytes_in=0,
            bytes_out=0, error_code=_code(outcome), upstream=record.upstream, cache=record.cache,
            neurons=record.neurons,
            neurons_estimated=record.neurons_estimated,
            cost_usd=None if record.neurons is None else usd_of_neurons(record.neurons), account=record.account))
        if key is None:
            return
        neurons, tokens = record.neurons, record.prompt_tokens + record.completion_tokens
        if key.policy.budgeted and (record.hold_id is not None or neurons):
            # The line's hold (taken before its upstream calls, service.grants) becomes what it cost.
            hold_id, model, calls = record.hold_id, record.model, record.calls
            await self.ledger.settle(hold_id, key.id, neurons, model=model, calls=calls, now=time.time())
        if key.policy.tpm is not None and tokens:
            await self.limiter.record_tokens(key.id, tokens, now=time.time())
