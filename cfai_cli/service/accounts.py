"""Workers AI over every Cloudflare account in order, for one request: run, run raw, stream, model search.

Imports errors, upstream (the router and the Workers AI provider) and, for "did you mean", service.models
(lazily: it imports service.context, which imports this). Embeddings, images, audio and the model list fail
over between accounts through it without knowing about routes; each call is judged, charged and recorded on
the request's record, and a 404 for an unknown model gets the catalogue's closest names appended.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from cfai_cli.core.routing import Target
from cfai_cli.errors import CfaiError, InvalidRequest, ModelNotFound, UpstreamError
from cfai_cli.upstream.provider import Provider
from cfai_cli.upstream.workers import WorkersAIClient
from cfai_cli.upstream.workers_answers import RawAnswer, UpstreamStream

if TYPE_CHECKING:
    from cfai_cli.service.context import Context

T = TypeVar("T")


def workers_of(provider: Provider) -> WorkersAIClient:
    """The Workers AI client a Cloudflare-only chain hands out (the router gives nothing else there)."""
    if not isinstance(provider, WorkersAIClient):
        raise UpstreamError(f"A Cloudflare account's lane holds a {type(provider).__name__}, not Workers AI.")
    return provider


async def did_you_mean(ctx: Context, error: ModelNotFound, model: str) -> None:
    """Append the catalogue's closest ids to a 404 for an unknown Workers AI model."""
    from cfai_cli.service.models import suggest_models  # models imports service.context, which imports us

    error.message += await suggest_models(ctx, model)


async def on_workers(ctx: Context, provider: Provider, model: str,
                     work: Callable[[WorkersAIClient], Awaitable[T]]) -> T:
    """`work` on a Workers AI provider for `model`, a 404 there told which models are close."""
    try:
        return await work(workers_of(provider))
    except ModelNotFound as exc:
        await did_you_mean(ctx, exc, model)
        raise


class WorkersPool:
    """The calls of `WorkersAIClient` on the first Cloudflare account that answers, for `ctx`'s request."""

    __slots__ = ("ctx",)

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def _call(self, model: str, work: Callable[[WorkersAIClient, str], Awaitable[T]]) -> T:
        ctx = self.ctx

        async def attempt(target: Target, provider: Provider) -> T:
            return await on_workers(ctx, provider, target.model, lambda client: work(client, target.model))

        return await ctx.router.call(model, attempt, cloudflare_only=True, caller=ctx.record)

    async def reserve(self, model: str, calls: int) -> None:
        """Charge a fan-out's `calls` to the request's limits once its key may use `model` (a 403 otherwise, before
        anything is charged: a refused request must not use up a rate window, server.auth)."""
        self.ctx.router.authorize(model, self.ctx.record, cloudflare_only=True)
        await self.ctx.record.hold(model, calls)
        await self.ctx.record.reserve(calls)

    async def run(self, model: str, body: Mapping[str, Any], *, vectors: bool | Literal["text"] = False) -> Any:
        return await self._call(model, lambda client, m: client.run(m, body, vectors=vectors))

    async def run_raw(self, model: str, **kwargs: Any) -> RawAnswer:
        return await self._call(model, lambda client, m: client.run_raw(m, **kwargs))

    async def stream(self, model: str, body: Mapping[str, Any]) -> UpstreamStream:
        return await self._call(model, lambda client, m: client.stream(m, body))

    async def queue(self, model: str, requests: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
        """Queue an async batch on the first Cloudflare account that takes it, judged and charged as one call:
        (its request_id, the account's upstream name, which every poll of it must go to)."""
        ctx = self.ctx

        async def attempt(target: Target, provider: Provider) -> tuple[str, str]:
            result = await on_workers(ctx, provider, target.model, lambda client: client.queue(target.model, requests))
            return str(result["request_id"]), target.upstream

        return await ctx.router.call(model, attempt, cloudflare_only=True, caller=ctx.record)

    async def poll_queue(self, account: str, model: str, request_id: str) -> tuple[dict[str, Any], float | None]:
        """Poll an async batch on the account that accepted it (any of its keys, in order): (the unwrapped
        result, the neurons Workers AI reported for the answer or None). Not charged to the request's limits:
        a poll runs no model. A 4xx from the account (it does not know the batch) is raised at once."""
        lanes = [lane for lane in self.ctx.router.lanes if lane.upstream == account and lane.kind == "cloudflare"]
        usable = [lane for lane in lanes if lane.provider is not None and not lane.unavailable]
        if not usable:
            why = "; ".join(f"{lane.label}: {lane.unavailable or 'unavailable'}" for lane in lanes)
            raise UpstreamError(f"Cannot poll async batch {request_id}: the Cloudflare account {account!r} that "
                                f"accepted it is {'unavailable (' + why + ')' if lanes else 'no longer configured'}.")
        last: CfaiError | None = None
        for i, lane in enumerate(usable):
            assert lane.provider is not None
            neurons = _Neurons()
            client = workers_of(lane.provider).for_attempt(retry=i == len(usable) - 1, waits=neurons)
            try:
                return await client.poll_queue(model, request_id), neurons.reported
            except CfaiError as exc:
                exc.message = self.ctx.router.scrubber.text(exc.message)
                if isinstance(exc, InvalidRequest):
                    raise
                last = exc
        assert last is not None
        raise last

    async def models_search(self, params: Mapping[str, str | int]) -> list[dict[str, Any]]:
        # The catalogue is not a model call: no model policy, not charged (it is cached per process); its
        # waiting still counts as the request's.
        return await self.ctx.router.call(
            "(model search)", lambda _, provider: workers_of(provider).models_search(params), cloudflare_only=True,
            waits=self.ctx.record)


@dataclass(slots=True)
class _Neurons:
    """Where one poll's waiting and reported neurons go (an upstream.provider.WaitLog)."""

    upstream_wait: float = 0.0
    reported: float | None = None

    def add_neurons(self, neurons: float) -> None:
        self.reported = (self.reported or 0.0) + neurons
