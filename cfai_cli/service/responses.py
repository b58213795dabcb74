"""The Responses API for both front ends, built on the chat service for every Workers AI text model.

Imports core, store, errors and service.chat. A Responses request becomes a chat request (with the
stored conversation when `previous_response_id` is set), the chat answer or chunk stream becomes a
Response or its events, and the result is stored unless `store` is false. As with chat, everything that
can fail early happens before the stream is returned, so the proxy can still answer a plain HTTP error.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from cfai_cli.core.openai.chat import ChatCompletionRequest
from cfai_cli.core.openai.responses import CreateResponseRequest, Event, Item, ResponseObject
from cfai_cli.core.translate.responses import (
    check_supported,
    input_items,
    response_shell,
    response_tools,
    responses_param,
    to_chat_request,
)
from cfai_cli.core.translate.responses_items import resolve_references
from cfai_cli.core.translate.responses_stream import ResponseBuilder, response_from_completion
from cfai_cli.core.translate.toolset import ToolSet
from cfai_cli.errors import CfaiError, InvalidRequest, NotFound
from cfai_cli.service.chat import create_chat_completion, open_chat_stream, request_affinity
from cfai_cli.service.chat_stream import ChatStream, EventStream
from cfai_cli.service.context import Context
from cfai_cli.store.responses import ResponseStore

T = TypeVar("T")


def response_store(ctx: Context) -> ResponseStore:
    store = ctx.cache.get("response_store")
    if not isinstance(store, ResponseStore):
        store = ctx.cache["response_store"] = ResponseStore(ctx.settings.storage)
    return store


def _not_found(response_id: str, param: str | None = None) -> NotFound:
    return NotFound(f"No response found with id '{response_id}'.", param=param)


@dataclass
class _Plan:
    req: CreateResponseRequest
    chat: ChatCompletionRequest
    items: list[Item]
    shell: ResponseObject
    tools: ToolSet
    owner: str | None = None
    affinity: str | None = None  # the x-session-affinity the chat calls carry, kept with the response


def _plan(ctx: Context, req: CreateResponseRequest, *, stream: bool, owner: str | None) -> _Plan:
    check_supported(req)
    history: list[Item] = []
    chain = None
    if req.previous_response_id:
        chain = response_store(ctx).chain(req.previous_response_id, owner=owner)
        if chain is None:
            raise _not_found(req.previous_response_id, "previous_response_id")
        history = chain.items
    items = resolve_references(input_items(req.raw_input(), ctx.ids),
                               lambda item_id: response_store(ctx).find_item(item_id, owner=owner))
    model = req.model or ctx.settings.default_model
    tools = response_tools(req, history=history, items=items)
    chat = to_chat_request(req, history, items, model=model, stream=stream, tools=tools)
    model_id = ctx.router.resolve(model, vision=chat.has_images())  # the model the chat service will pick
    shell = response_shell(req, response_id=ctx.ids("resp"), created_at=ctx.now(), model=model_id)
    affinity = request_affinity(ctx, chat, chain_affinity=chain.affinity if chain else None,
                                chain_root=chain.root if chain else None)
    return _Plan(req, chat, items, shell, tools, owner, affinity)


def _save(ctx: Context, plan: _Plan, response: ResponseObject) -> None:
    if plan.req.store is not False:
        response_store(ctx).save(dict(response), plan.items, owner=plan.owner, affinity=plan.affinity)


async def _chat(call: Awaitable[T]) -> T:
    """Run a chat-service call; a 400 about the chat request names the Responses parameter instead."""
    try:
        return await call
    except InvalidRequest as exc:
        param = responses_param(exc.param)
        if param == exc.param:
            raise
        exc.message = exc.message.replace(f"'{exc.param}'", f"'{param}'")
        exc.args = (exc.message,)
        exc.param = param
        raise


async def create_response(ctx: Context, req: CreateResponseRequest, *, owner: str | None = None) -> ResponseObject:
    """`owner` is the API key id the proxy saw (None from the CLI): stored responses are visible to it alone."""
    plan = _plan(ctx, req, stream=False, owner=owner)
    completion = await _chat(create_chat_completion(ctx, plan.chat, affinity=plan.affinity))
    response = response_from_completion(completion, plan.shell, new_id=ctx.ids, completed_at=ctx.now(),
                                        summary=req.wants_summary(), tools=plan.tools)
    _save(ctx, plan, response)
    return response


class ResponseStream(EventStream[Event]):
    """The events of one streamed response, a batch per batch of the chat stream under it; `fail()` ends it
    in-band when the stream breaks elsewhere."""

    def __init__(self, ctx: Context, plan: _Plan, chat: ChatStream) -> None:
        self._ctx, self._plan = ctx, plan
        self.builder = ResponseBuilder(plan.shell, new_id=ctx.ids, summary=plan.req.wants_summary(), tools=plan.tools)
        self.error: CfaiError | None = None  # what ended the stream in-band, for callers that want to raise it
        super().__init__(self._events(chat), owns=(chat,))

    def fail(self, error: CfaiError) -> list[Event]:
        return [] if self.builder.ended else self.builder.fail(error)

    async def _events(self, chat: ChatStream) -> AsyncGenerator[list[Event], None]:
        builder = self.builder
        async with chat:
            yield builder.start()
            try:
                async for batch in chat.batches():
                    yield [event for chunk in batch for event in builder.feed(chunk)]
                closing_events = builder.finish(completed_at=self._ctx.now())
            except CfaiError as exc:
                # A mid-stream error comes from past the router, which masks the ones it sees: mask it here, as
                # it is stored with the response as well as sent.
                exc.message = self._ctx.router.scrubber.text(exc.message)
                self.error = exc
                closing_events = builder.fail(exc)
            # Stored before the terminal event goes out: a client may disconnect as soon as it has it.
            _save(self._ctx, self._plan, builder.response)
            yield closing_events


async def open_response_stream(ctx: Context, req: CreateResponseRequest, *,
                               owner: str | None = None) -> ResponseStream:
    """Open the upstream stream and return the event iterator."""
    plan = _plan(ctx, req, stream=True, owner=owner)
    return ResponseStream(ctx, plan, await _chat(open_chat_stream(ctx, plan.chat, affinity=plan.affinity)))


def get_response(ctx: Context, response_id: str, *, owner: str | None = None) -> dict[str, Any]:
    found = response_store(ctx).get(response_id, owner=owner)
    if found is None:
        raise _not_found(response_id)
    return found[0]


def delete_response(ctx: Context, response_id: str, *, owner: str | None = None) -> dict[str, Any]:
    if not response_store(ctx).delete(response_id, owner=owner):
        raise _not_found(response_id)
    # As the official spec's example for DELETE /responses/{id} shows it.
    return {"id": response_id, "object": "response", "deleted": True}


def list_input_items(ctx: Context, response_id: str, *, limit: int = 20, order: str = "desc",
                     after: str | None = None, owner: str | None = None) -> dict[str, Any]:
    """`GET /v1/responses/{id}/input_items`: one page of the items this response was asked with."""
    found = response_store(ctx).get(response_id, owner=owner)
    if found is None:
        raise _not_found(response_id)
    if order not in ("asc", "desc"):
        raise InvalidRequest("Invalid value for 'order': expected 'asc' or 'desc'.", param="order",
                             code="invalid_value")
    if not 1 <= limit <= 100:
        raise InvalidRequest("Invalid value for 'limit': expected 1 to 100.", param="limit", code="invalid_value")
    items = list(found[1]) if order == "asc" else list(reversed(found[1]))
    if after is not None:
        ids = [item.get("id") for item in items]
        if after not in ids:
            raise InvalidRequest(f"No input item with id '{after}' in this response.", param="after",
                                 code="invalid_value")
        items = items[ids.index(after) + 1:]
    page = items[:limit]
    return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit}
