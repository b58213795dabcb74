"""The local admin's batches (`cfai batch`): every batch of the data directory whoever owns it, and running one here.

Imports anyio, service, store, core and errors. The proxy shows a key only its own batches (service.batches);
the CLI runs on the host that holds the data directory, so like `cfai keys` it sees all of them, and reads and
changes each through its owner. `run_here` runs one batch in this process with the same executor `cfai serve`
runs (service.batch_executor), claiming only that batch's lease: a server on the same data directory never
runs it at the same time, and takes it back if this process stops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from cfai_cli.core.openai.batches import FINAL, LineChecker, LineError, batch_object
from cfai_cli.errors import Conflict, InvalidRequest, NotFound
from cfai_cli.service.batch_executor import BatchExecutor
from cfai_cli.service.batches import wait_batch
from cfai_cli.service.context import Context
from cfai_cli.settings import Settings
from cfai_cli.store.batches import BatchStore
from cfai_cli.store.blobs import blocking, chunks_of, open_blobs
from cfai_cli.store.files import FileStore
from cfai_cli.store.usage import UsageRow

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class InputFile:
    requests: int
    urls: dict[str, int]  # each url the lines use -> the first line that uses it


def inspect_input(path: Path, max_lines: int) -> InputFile:
    """Check a batch input file as the upload will (the first bad line named), and which urls it uses."""
    checker = LineChecker(max_lines)
    urls: dict[str, int] = {}
    requests = 0
    with path.open("rb") as lines:
        for raw in lines:
            try:
                parsed = checker.add(raw)
            except LineError as exc:
                raise InvalidRequest(f"{path}: {exc}", param="file", code="invalid_batch_file") from None
            if parsed is not None:
                requests += 1
                urls.setdefault(parsed[1], checker.count)
    if not requests:
        raise InvalidRequest(f"{path} holds no requests (one JSON object per line).", param="file",
                             code="invalid_batch_file")
    return InputFile(requests, urls)


def find_batch(settings: Settings, batch_id: str) -> tuple[Json, str | None]:
    """A batch's object and its owner (a key id, or None for the CLI's own and `--no-auth` batches)."""
    store = BatchStore(settings.storage)
    row = store.find(batch_id)
    if row is None:
        raise NotFound(f"No batch {batch_id[:100]!r} in {store.db.label}; `cfai batch list` shows them.",
                       code="batch_not_found")
    return batch_object(row), row["owner"]


def list_all(settings: Settings, *, limit: int, after: str | None = None) -> tuple[Json, dict[str, str | None]]:
    """OpenAI's list object of every batch, newest first, and each batch's owner."""
    rows, more = BatchStore(settings.storage).page_all(limit=limit, after=after)
    out: Json = {"object": "list", "data": [batch_object(r) for r in rows], "has_more": more}
    if rows:
        out["first_id"], out["last_id"] = rows[0]["id"], rows[-1]["id"]
    return out, {r["id"]: r["owner"] for r in rows}


def file_bytes(settings: Settings, file_id: str, *, owner: str | None) -> bytes:
    """The content of a batch's output or error file (owned by the batch's owner)."""
    store = FileStore(settings.storage, settings.files_dir, open_blobs(settings.blobs, settings.files_dir, "files"))
    found = store.get(file_id, owner=owner)
    gone = NotFound(f"The file {file_id} is gone (deleted through /v1/files?).", code="file_not_found")
    if found is None:
        raise gone

    async def read() -> bytes:
        blob = await store.open(found)
        if blob is None:
            raise gone
        return b"".join([chunk async for chunk in chunks_of(blob)])

    return blocking(read)


class OneBatchExecutor(BatchExecutor):
    """The executor, claiming only `batch_id`: it takes the batch whenever nobody else holds its lease."""

    def __init__(self, ctx: Context, batch_id: str, **options: Any) -> None:
        super().__init__(ctx, **options)
        self.batch_id = batch_id

    async def claim_once(self) -> list[str]:
        if self.running:
            return []
        taken = await anyio.to_thread.run_sync(lambda: self.store.claim_one(
            self.batch_id, self.holder, now=time.time(), ttl=self.lease_ttl))
        if not taken:
            return []
        self.running[self.batch_id] = asyncio.get_running_loop().create_task(self._run(self.batch_id))
        return [self.batch_id]


async def run_here(ctx: Context, batch_id: str, *, owner: str | None, sink: Callable[[UsageRow], None],
                   progress: Callable[[Json], None] | None = None, interval: float = 0.5) -> Json:
    """Run (or resume) a batch in this process until it is final; `progress` sees it as it goes.

    When another process holds the batch (a `cfai serve`), this one only watches, and takes over if that
    process stops renewing its lease. Cancelled (Ctrl-C), the executor stops where it is: lines in flight
    are abandoned and stay pending, finished lines are kept, the lease is released for whoever resumes it.
    """
    executor = OneBatchExecutor(ctx, batch_id, sink=sink, keys_required=False, poll_interval=interval)
    executor.start()
    try:
        return await wait_batch(ctx, batch_id, owner=owner, interval=interval, progress=progress)
    finally:
        await executor.stop()


def cancel(settings: Settings, batch_id: str, *, now: int) -> tuple[Json, str | None]:
    """Ask whoever runs the batch to stop starting lines (it is `cancelling`); a final batch is a Conflict."""
    batch, owner = find_batch(settings, batch_id)
    if batch["status"] in FINAL:
        raise Conflict(f"batch {batch_id} is already {batch['status']}: there is nothing to cancel.",
                       code="batch_not_cancellable")
    row = BatchStore(settings.storage).request_cancel(batch_id, owner=owner, now=now)
    assert row is not None
    return batch_object(row), owner


async def finish_here(ctx: Context, batch_id: str, *, sink: Callable[[UsageRow], None]) -> bool:
    """Drive a batch to its end here if nobody else holds it (a cancelled batch: no line starts, its files
    are written); False when another process runs it (that process finishes the cancel)."""
    executor = OneBatchExecutor(ctx, batch_id, sink=sink, keys_required=False)
    if not await executor.claim_once():
        return False
    await executor.running[batch_id]
    return True
