"""The Batch API (`/v1/batches`) for the proxy and the CLI: create, show, list, cancel, wait for a key's batches.

Imports anyio, service, store, core and errors. Creating a batch only records it (status `validating`); the
executor (service.batch_executor) claims it, checks its lines and runs them. Batches are private to the key
that created them: another key's batch is a 404, as a batch that never existed. The key must hold the scope
of the batch's endpoint (`chat` for chat, completions and responses, `embeddings` for embeddings), as it
would to call that endpoint itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import anyio

from cfai_cli.core.openai.batches import FINAL, WINDOW_SECONDS, CreateBatchRequest, batch_object
from cfai_cli.errors import InvalidRequest, NotFound, PermissionDenied
from cfai_cli.service.context import Context
from cfai_cli.service.files import file_store, not_found
from cfai_cli.store.batches import BatchStore

Json = dict[str, Any]
ENDPOINT_SCOPES = {"/v1/chat/completions": "chat", "/v1/completions": "chat", "/v1/responses": "chat",
                   "/v1/embeddings": "embeddings"}


def batch_store(ctx: Context) -> BatchStore:
    return BatchStore(ctx.settings.storage)


def _missing(batch_id: str) -> NotFound:
    return NotFound(f"No batch found with id '{batch_id[:100]}'.", code="batch_not_found")


def create_batch(ctx: Context, req: CreateBatchRequest, *, owner: str | None,
                 scopes: frozenset[str] | None = None) -> Json:
    """Record a batch of `req.input_file_id` for `owner`; `scopes` are the key's (None: every scope)."""
    req.check()
    needed = ENDPOINT_SCOPES[req.endpoint]
    if scopes is not None and needed not in scopes:
        raise PermissionDenied(f"This key may not use the {needed} endpoints, so it cannot batch {req.endpoint}.",
                               param="endpoint", code="insufficient_scope")
    found = file_store(ctx).get(req.input_file_id, owner=owner)
    if found is None:
        raise not_found(req.input_file_id, "input_file_id")
    if found.purpose != "batch":
        raise InvalidRequest(f"The file {found.id} was uploaded with purpose {found.purpose!r}; a batch's input "
                             "file needs purpose 'batch'.", param="input_file_id", code="invalid_value")
    created = ctx.now()
    row = batch_store(ctx).create(batch_id=ctx.ids("batch"), owner=owner, endpoint=req.endpoint,
                                  input_file_id=found.id, completion_window=req.completion_window,
                                  metadata=req.metadata, created_at=created,
                                  expires_at=created + WINDOW_SECONDS[req.completion_window])
    return batch_object(row)


def get_batch(ctx: Context, batch_id: str, *, owner: str | None) -> Json:
    row = batch_store(ctx).get(batch_id, owner=owner)
    if row is None:
        raise _missing(batch_id)
    return batch_object(row)


def list_batches(ctx: Context, *, owner: str | None, limit: int = 20, after: str | None = None) -> Json:
    if not 1 <= limit <= 100:
        raise InvalidRequest("Invalid value for 'limit': expected an integer from 1 to 100.", param="limit",
                             code="invalid_value")
    rows, more = batch_store(ctx).page(owner=owner, limit=limit, after=after)
    out: Json = {"object": "list", "data": [batch_object(r) for r in rows], "has_more": more}
    if rows:
        out["first_id"], out["last_id"] = rows[0]["id"], rows[-1]["id"]
    return out


def cancel_batch(ctx: Context, batch_id: str, *, owner: str | None) -> Json:
    """Ask the batch's executor to stop starting lines; the batch is `cancelling` until it has."""
    row = batch_store(ctx).request_cancel(batch_id, owner=owner, now=ctx.now())
    if row is None:
        raise _missing(batch_id)
    return batch_object(row)


async def wait_batch(ctx: Context, batch_id: str, *, owner: str | None, interval: float = 1.0,
                     progress: Callable[[Json], None] | None = None) -> Json:
    """The batch once it is final; `progress` sees it each time it is read (the CLI's progress bar)."""
    while True:
        batch = await anyio.to_thread.run_sync(lambda: get_batch(ctx, batch_id, owner=owner))
        if progress is not None:
            progress(batch)
        if batch["status"] in FINAL:
            return batch
        await asyncio.sleep(interval)
