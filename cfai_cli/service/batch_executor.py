"""The batch executor: runs the lines of stored batches to the end, durably, one process per batch at a time.

Imports service, store, core and errors. `cfai serve` starts one in its lifespan (each uvicorn worker has its
own); the CLI can run one in-process. It claims batches through their lease (store.batches: holder id and a
heartbeat deadline renewed every third of the TTL), so a batch runs in one process at a time; a process that
dies stops renewing and another takes the batch over once the lease runs out. Every line's result is written
the moment it is known and only lines without one run, so a restart re-runs nothing that finished.

A batch moves validating (the input file checked against the batch: each line's url must be its endpoint)
-> in_progress (lines run through service.batch_lines, at most `batch_concurrency` at once per batch and
`batch_max_concurrency` in the process) -> finalizing (the output and error files written) -> completed; or
failed (validation), cancelling -> cancelled (no new lines start, lines in flight finish, finished results
kept), expired (the completion window ran out: unfinished lines are reported as `batch_expired` errors).
Lines for models Workers AI can queue as its own async batches go to the queue lane instead
(service.batch_queued: submitted, the job stored, polled again after a restart) while the others run live.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio

from cfai_cli.core.openai.batches import LineChecker, LineError, output_line
from cfai_cli.errors import BlobsUnavailable, CfaiError, StoreUnavailable
from cfai_cli.service.batch_lines import BudgetExhausted, LineRunner, Outcome
from cfai_cli.service.batch_queued import QueueLane
from cfai_cli.service.context import Context
from cfai_cli.service.files import file_store, write_output_file
from cfai_cli.store.batches import BatchStore, LeaseLost, Line, Row
from cfai_cli.store.blobs import local_file
from cfai_cli.store.budgets import Budgets
from cfai_cli.store.limit_rule import RateLimits
from cfai_cli.store.usage import UsageRow

log = logging.getLogger("cfai.batch")
MAX_ERRORS = 100  # validation errors reported on a failed batch


def holder_id() -> str:
    """This executor's name in leases: host, process and a random part (two executors in one process differ)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


class BatchExecutor:
    def __init__(self, ctx: Context, *, sink: Callable[[UsageRow], None], keys_required: bool,
                 holder: str | None = None, lease_ttl: float = 30.0, poll_interval: float = 2.0,
                 queue: bool = True, limiter: RateLimits | None = None, ledger: Budgets | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.ctx = ctx
        self.store = BatchStore(ctx.settings.storage)
        self.keys_required = keys_required  # then keyless batches (the CLI's) are not this executor's to run
        # `limiter`, `ledger`: the server's (shared by replicas with [coordination]); else ones on the database
        self.runner = LineRunner(ctx, sink=sink, keys_required=keys_required, sleep=sleep, limiter=limiter,
                                 ledger=ledger)
        self.holder = holder or holder_id()
        self.lease_ttl = lease_ttl
        self.poll_interval = poll_interval
        # Workers AI's async queue (service.batch_queued); `queue=False` or the setting `batch_queue` off: all live.
        self.lane = QueueLane(ctx, self.runner, self.store, self.holder, self._record, sleep=sleep) if queue else None
        self.per_batch = max(1, ctx.settings.batch_concurrency)
        self.slots = asyncio.Semaphore(max(1, ctx.settings.batch_max_concurrency))
        self.max_batches = max(1, ctx.settings.batch_max_concurrency)
        self.running: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    def wake(self) -> None:
        """Look for work now (a batch was just created or cancelled) rather than at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop every batch where it is: lines in flight are abandoned (they stay pending), leases released."""
        tasks = [t for t in (self._task, *self.running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                await self.claim_once()
            except Exception as exc:  # a locked or broken database must not end the loop
                log.error("batch executor: %s", exc)
            # Not asyncio.wait_for: on Python 3.11 it can swallow a cancel that arrives as the event is set (a
            # batch created as the server stops), and the loop would then never end.
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({waiter}, timeout=self.poll_interval)
            finally:
                waiter.cancel()
            self._wake.clear()

    async def claim_once(self) -> list[str]:
        free = self.max_batches - len(self.running)
        if free <= 0:
            return []
        ids = await anyio.to_thread.run_sync(
            lambda: self.store.claim(self.holder, now=time.time(), ttl=self.lease_ttl, limit=free,
                                     owned_only=self.keys_required))
        for batch_id in ids:
            self.running[batch_id] = asyncio.get_running_loop().create_task(self._run(batch_id))
        return ids

    async def _run(self, batch_id: str) -> None:
        drive = asyncio.current_task()
        assert drive is not None
        beat = asyncio.get_running_loop().create_task(self._heartbeat(batch_id, drive))
        try:
            await self.drive(batch_id)
        except LeaseLost:
            log.warning("batch %s: another executor holds it now; this one stopped", batch_id)
        except asyncio.CancelledError:
            pass
        except BlobsUnavailable as exc:  # the files' bucket is down: the batch stays where it is, taken up again
            log.warning("batch %s waits for blob storage: %s", batch_id, exc.message)
        except StoreUnavailable as exc:  # PostgreSQL away: the same (its lease lapses; taken up again after)
            log.warning("batch %s waits for the database: %s", batch_id, exc.message)
        except Exception as exc:  # one batch's failure must not stop the others
            log.error("batch %s failed inside the executor: %s", batch_id, exc,
                      exc_info=(type(exc), exc, exc.__traceback__))
        finally:
            beat.cancel()
            self.running.pop(batch_id, None)
            with anyio.CancelScope(shield=True), contextlib.suppress(StoreUnavailable):  # the lease lapses instead
                await anyio.to_thread.run_sync(lambda: self.store.release(batch_id, self.holder))

    async def _heartbeat(self, batch_id: str, drive: asyncio.Task[None]) -> None:
        while True:
            await asyncio.sleep(self.lease_ttl / 3)
            held = await anyio.to_thread.run_sync(
                lambda: self.store.renew(batch_id, self.holder, now=time.time(), ttl=self.lease_ttl))
            if not held:
                drive.cancel()
                return

    # -- one batch ------------------------------------------------------------------------------------------

    async def _load(self, batch_id: str) -> Row:
        return await anyio.to_thread.run_sync(self.store.load, batch_id)

    async def drive(self, batch_id: str) -> None:
        """Take a batch the executor holds from wherever it stands to a final state."""
        row = await self._load(batch_id)
        if row["status"] == "validating":
            lines = await self._validate(row)
            if lines is None:
                return
            await anyio.to_thread.run_sync(
                lambda: self.store.start(batch_id, self.holder, lines, now=self.ctx.now()))
            row = await self._load(batch_id)
        if row["status"] in ("in_progress", "cancelling") and row["total"]:
            await self._execute(row)
            row = await self._load(batch_id)
        await self._finalize(row)

    async def _validate(self, row: Row) -> list[Line] | None:
        """The batch's lines, or None after marking it failed with the reasons (each naming its line)."""
        errors: list[dict[str, Any]] = []
        lines: list[Line] = []
        store = file_store(self.ctx)
        found = await anyio.to_thread.run_sync(lambda: store.get(row["input_file_id"], owner=row["owner"]))
        blob = None if found is None or found.purpose != "batch" else await store.open(found)
        if blob is None:
            errors.append({"code": "invalid_input_file", "message": f"The input file {row['input_file_id']} is "
                           "gone or is not a batch file.", "param": "input_file_id", "line": None})
        else:  # read line by line from a local file: the disk's own, or a copy streamed from the bucket
            async with local_file(blob, store.directory) as path:
                await anyio.to_thread.run_sync(self._read_lines, row, path, errors, lines)
        if errors:
            await anyio.to_thread.run_sync(lambda: self.store.update(
                row["id"], self.holder, status="failed", failed_at=self.ctx.now(), errors=errors[:MAX_ERRORS]))
            return None
        return lines

    def _read_lines(self, row: Row, path: Path, errors: list[dict[str, Any]], lines: list[Line]) -> None:
        checker = LineChecker(self.ctx.settings.batch_max_lines)
        with path.open("rb") as source:
            for raw in source:
                try:
                    parsed = checker.add(raw)
                except LineError as exc:
                    errors.append({"code": "invalid_request", "message": str(exc), "param": exc.param,
                                   "line": exc.line})
                    continue
                if parsed is None:
                    continue
                custom_id, url, body = parsed
                if url != row["endpoint"]:
                    errors.append({"code": "mismatched_endpoint", "param": "url", "line": checker.count,
                                   "message": f"line {checker.count}: 'url' is {url}, but the batch's endpoint "
                                              f"is {row['endpoint']}; every line must use it."})
                lines.append(Line(checker.count, custom_id, json.dumps(body, ensure_ascii=False)))
                if len(errors) >= MAX_ERRORS:
                    break
        if not lines and not errors:
            errors.append({"code": "empty_file", "message": "The input file holds no requests.",
                           "param": "input_file_id", "line": None})

    async def _execute(self, row: Row) -> None:
        """The queue lane submits first (its lines leave the pending ones) and polls while the rest run live;
        lines a forgotten job gave back run live once the poller is done."""
        batch_id = row["id"]
        stop = asyncio.Event()
        if row["status"] != "in_progress":
            stop.set()

        async def look() -> None:  # cancel and expiry can come from any process: read them from the database
            current = await self._load(batch_id)
            if current["status"] != "in_progress" or self.ctx.now() >= (current["expires_at"] or 1 << 62):
                stop.set()

        async def watch() -> None:  # for lines waiting on a rate window and chunks waiting to be submitted
            while not stop.is_set():
                await asyncio.sleep(0.5)
                await look()

        watcher = asyncio.get_running_loop().create_task(watch())
        poller: asyncio.Task[None] | None = None
        try:
            if self.lane is not None:
                await self.lane.submit(row, stop.is_set)
                poller = asyncio.get_running_loop().create_task(self.lane.poll(row))
            await self._live(row, stop, look)
            if poller is not None:
                await poller  # cancelled or not: submitted jobs are billed anyway, so their answers are kept
                if not stop.is_set():  # lines of jobs Workers AI forgot are pending again: they run live now
                    await self._live(row, stop, look)
        finally:
            stop.set()
            watcher.cancel()
            if poller is not None and not poller.done():
                poller.cancel()

    async def _live(self, row: Row, stop: asyncio.Event, look: Callable[[], Awaitable[None]]) -> None:
        """The pending lines through the live path, at most `batch_concurrency` at once."""
        batch_id, endpoint, owner = row["id"], row["endpoint"], row["owner"]
        budget: list[CfaiError] = []
        lost: list[int] = []
        stopped = stop.is_set

        async def one(line: Line, slot: asyncio.Semaphore) -> None:
            try:
                outcome = await self.runner.run(endpoint, json.loads(line.body), owner=owner, stopped=stopped)
            except BudgetExhausted as exc:
                budget.append(exc.error)
                stop.set()
                outcome = Outcome(exc.error.status, exc.error.to_openai())
            finally:
                slot.release()
                self.slots.release()
            if outcome is not None:
                try:
                    await self._record(batch_id, line, outcome)
                except LeaseLost:  # not raised inside the group: that would cancel the lines of a batch we lost
                    lost.append(line.line)
                    stop.set()

        per_batch = asyncio.Semaphore(self.per_batch)
        async with asyncio.TaskGroup() as group:
            for line in await anyio.to_thread.run_sync(self.store.pending, batch_id):
                await per_batch.acquire()
                await self.slots.acquire()
                if not stopped():
                    await look()  # before each line: a cancel stops the next line from starting
                if stopped():
                    per_batch.release()
                    self.slots.release()
                    break
                group.create_task(one(line, per_batch))
        if lost:
            raise LeaseLost(batch_id)
        if budget:  # the key is out of budget: the lines that did not run fail with its refusal
            for line in await anyio.to_thread.run_sync(self.store.pending, batch_id):
                await self._record(batch_id, line, Outcome(budget[0].status, budget[0].to_openai()))

    async def _record(self, batch_id: str, line: Line, outcome: Outcome) -> bool:
        """Write a line's result in OpenAI's output format; False if it already had one."""
        body = outcome.body
        output = output_line(line_id=f"batch_req_{secrets.token_hex(12)}", custom_id=line.custom_id,
                             status_code=outcome.status_code, body=body, request_id=f"req_{secrets.token_hex(12)}")
        with anyio.CancelScope(shield=True):  # a finished line is written even while the executor stops
            written = await anyio.to_thread.run_sync(lambda: self.store.finish_line(
                batch_id, self.holder, line.line, ok=outcome.ok, output=output, tokens=outcome.tokens))
        return written

    async def _finalize(self, row: Row) -> None:
        status = row["status"]
        if status in ("failed", "completed", "expired", "cancelled"):
            return
        batch_id = row["id"]
        expired, late = await anyio.to_thread.run_sync(self._finalizing, row)
        files: dict[str, Any] = {}
        for name, wanted in (("output_file_id", True), ("error_file_id", False)):
            made = await write_output_file(self.ctx, owner=row["owner"], filename=f"{batch_id}_{name[:-8]}.jsonl",
                                           lines=self._output(batch_id, wanted, late if not wanted else []))
            if made is not None:
                files[name] = made["id"]
        final = "expired" if expired else "cancelled" if status == "cancelling" else "completed"

        def end() -> None:
            if late:  # the lines the window left unrun count as failed, as OpenAI counts them
                files["failed"] = self.store.load(batch_id)["failed"] + len(late)
            self.store.update(batch_id, self.holder, status=final, **{f"{final}_at": self.ctx.now()}, **files)

        await anyio.to_thread.run_sync(end)

    def _finalizing(self, row: Row) -> tuple[bool, list[tuple[int, str]]]:
        """Whether the batch ran out of its window, and then its unfinished lines; it is `finalizing` now."""
        batch_id, status, now = row["id"], row["status"], self.ctx.now()
        expired = status == "in_progress" and now >= (row["expires_at"] or 1 << 62) and bool(
            self.store.unfinished(batch_id))
        if status != "finalizing" and not expired and status != "cancelling":
            self.store.update(batch_id, self.holder, status="finalizing", finalizing_at=now)
        return expired, [(n, cid) for n, cid in self.store.unfinished(batch_id)] if expired else []

    def _output(self, batch_id: str, ok: bool, late: list[tuple[int, str]]) -> Iterator[str]:
        for good, text in self.store.results(batch_id):
            if good == ok:
                yield text
        for _, custom_id in late:
            yield json.dumps(output_line(
                line_id=f"batch_req_{secrets.token_hex(12)}", custom_id=custom_id, status_code=None, body=None,
                request_id=None, error={"code": "batch_expired",
                                        "message": "This request could not be executed before the completion "
                                                   "window expired."}))

