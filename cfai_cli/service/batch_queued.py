"""The batch executor's queue lane: a batch's lines for models Workers AI queues run as its async batches.

Imports service, store, core and errors. The executor hands each running batch here before its live lines
(service.batch_executor). Pending lines are grouped per model name as the line wrote it, once aliases and
routes resolve it exactly as a live request would (a configured route runs live: its failover may leave
Workers AI), and only when the key's model policy allows it (a forbidden model's lines run live, where they
get their 403 without any upstream call). Each group is cut into chunks (service.batch_queue.plan_chunks);
a chunk is admitted line by line to the key's rpm/rpd window (a queued line is one request, as it would be
live: the queue is not a way around a key's limits; a chunk is sent with the lines admitted when the window
says wait, the rest wait for it, nothing fails), its estimated cost is held on the key's budget (the hold
lives as long as the batch's window), it is submitted, and the job is stored **before anything else** (the
submit and the write are shielded from cancellation) so a restarted executor polls it instead of sending it
again. Jobs are polled with backoff (`batch_queue_poll` doubling to `batch_queue_poll_max`, with jitter);
each line's result is written the moment the job is done, in the live lines' format, and only a line written
now leaves its usage row, its tokens in the key's TPM window, and the job's hold is settled with what the
lines cost: a restart between those writes re-polls the job and adds nothing twice.

Failures: a job the account no longer knows (a final InvalidRequest from poll, e.g. a restarted emulator)
puts its unfinished lines back to run live; polls failing otherwise are retried with the backoff, and after
`batch_queue_poll_failures` in a row the job's unfinished lines fail with the last error. Cancel stops new
submissions but keeps polling the jobs already submitted: Workers AI runs (and bills) them anyway, so their
answers are kept. Expiry stops polling: the lines still queued are reported `batch_expired`.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

import anyio

from cfai_cli.core.budgets import DEFAULT_OUTPUT_TOKENS
from cfai_cli.core.cost import Units
from cfai_cli.errors import CfaiError, InvalidRequest, QuotaExceeded
from cfai_cli.service import batch_queue
from cfai_cli.service.batch_lines import MAX_WAIT, BudgetExhausted, LineRunner, Outcome
from cfai_cli.service.batch_queue import QueuedJob, QueuedLine
from cfai_cli.service.context import Context
from cfai_cli.service.grants import HOLD_SECONDS, grant
from cfai_cli.service.record import RequestRecord
from cfai_cli.store.batches import BatchStore, Line, Row
from cfai_cli.store.keys import KeyRecord

log = logging.getLogger("cfai.batch")
Record = Callable[[str, Line, Outcome], Awaitable[bool]]  # the executor's durable write of one line's result


class QueueLane:
    def __init__(self, ctx: Context, runner: LineRunner, store: BatchStore, holder: str, record: Record, *,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.ctx, self.runner, self.store, self.holder, self.record = ctx, runner, store, holder, record
        self.sleep = sleep
        self.submitted = 0  # jobs this lane sent upstream (what tests count)
        # The catalogue (which models queue) is looked up in a cache of the lane's own: filling the process's
        # would change what its other requests know (published prices in budget holds, the router's known models).
        self._lookup = copy.copy(ctx)
        self._lookup.cache = {}

    async def submit(self, row: Row, stopped: Callable[[], bool]) -> None:
        """Submit the batch's queueable pending lines as jobs (stored), unless the batch is stopping."""
        known, key = await self._key(row)
        if not known or not self.ctx.settings.batch_queue or stopped():
            return
        for name, model, lines in await self._groups(row, key):
            if not await self._submit_group(row, key, name, model, lines, stopped):
                break

    async def poll(self, row: Row) -> None:
        """Poll the batch's stored jobs (these and earlier processes') until none is left or the batch expires."""
        _, key = await self._key(row)  # a key revoked since: its submitted jobs' answers are still collected
        await self._poll_all(row, key)

    async def _key(self, row: Row) -> tuple[bool, KeyRecord | None]:
        try:
            return True, await self.runner._key(row["owner"])
        except CfaiError:
            return False, None  # the live path gives every line the key's refusal

    # -- which lines ------------------------------------------------------------------------------------------

    async def _groups(self, row: Row, key: KeyRecord | None) -> list[tuple[str, str, list[tuple[Line, QueuedLine]]]]:
        endpoint = row["endpoint"]
        judge = RequestRecord()
        if key is not None:
            judge.model_patterns = key.policy.models
        supported: dict[str, bool] = {}
        groups: dict[str, tuple[str, list[tuple[Line, QueuedLine]]]] = {}
        for line in await anyio.to_thread.run_sync(self.store.pending, row["id"]):
            body = json.loads(line.body)
            name = body.get("model") if isinstance(body, dict) else None
            if not isinstance(name, str):
                continue
            if name not in groups:
                model = self._model(name, judge)
                if model is not None and model not in supported:
                    supported[model] = await batch_queue.supports_queue(self._lookup, model, endpoint)
                if model is None or not supported[model]:
                    continue
                groups[name] = (model, [])
            model, members = groups[name]
            queued = QueuedLine(custom_id=line.custom_id, body={**body, "model": model})
            if batch_queue.queueable(endpoint, queued):
                members.append((line, queued))
        return [(name, model, members) for name, (model, members) in groups.items() if members]

    def _model(self, name: str, judge: RequestRecord) -> str | None:
        """The Workers AI id `name` runs as live, if it is one model on the Cloudflare accounts the key may use."""
        try:
            route, targets = self.ctx.router.chain(name)
            if route is not None or not targets:
                return None
            judge.asked = name
            self.ctx.router.authorize(name, judge, cloudflare_only=True)
        except CfaiError:
            return None
        return targets[0].model

    # -- submitting -------------------------------------------------------------------------------------------

    async def _admitted(self, key: KeyRecord | None, wanted: int, stopped: Callable[[], bool]) -> int:
        """How many of `wanted` lines the key's window admits now (each counted as a request), waiting for the
        window when it admits none; 0 when the batch stops meanwhile or the key's budget is spent."""
        if key is None:
            return wanted
        wait = 0.0
        while not stopped():
            count = 0
            try:
                while count < wanted:
                    wait = await self.runner._admit(key)
                    if wait:
                        break
                    count += 1
            except BudgetExhausted:
                return count
            if count:
                return count
            await self.sleep(min(wait, MAX_WAIT))
        return 0

    async def _submit_group(self, row: Row, key: KeyRecord | None, name: str, model: str,
                            members: list[tuple[Line, QueuedLine]], stopped: Callable[[], bool]) -> bool:
        """False when submitting should stop for this batch (stopping, or the key's budget is spent)."""
        numbers = {queued.custom_id: line.line for line, queued in members}
        for chunk in batch_queue.plan_chunks([queued for _, queued in members]):
            while chunk:
                if stopped():
                    return False
                count = await self._admitted(key, len(chunk), stopped)
                if not count:
                    return False
                part, chunk = chunk[:count], chunk[count:]
                if not await self._submit(row, key, name, model, part, [numbers[q.custom_id] for q in part]):
                    return False
        return True

    async def _submit(self, row: Row, key: KeyRecord | None, name: str, model: str, part: Sequence[QueuedLine],
                      numbers: list[int]) -> bool:
        record = RequestRecord()
        if key is not None:
            window = max(HOLD_SECONDS, float(row["expires_at"] or 0) - time.time() + 3600)
            grant(record, key, self.runner.limiter, self.runner.ledger, cache=lambda: self.ctx.cache,
                  hold_seconds=window)
        record.asked = name
        record.prepaid = len(part)  # each line was admitted to the key's window above
        record.planned = _planned(part)
        ctx = self.ctx.for_request(record)
        with anyio.CancelScope(shield=True):  # a job Workers AI accepted is stored, whatever stops the executor
            try:
                await record.hold(model, len(part))
                job = await batch_queue.submit(ctx, row["endpoint"], model, part)
            except CfaiError as exc:
                # Its lines stay pending and run live, where they meet the same refusal (or succeed).
                await self._settle(key, record.hold_id, None, model, 0)
                log.warning("batch %s: %d lines of %s not queued (%s); they run live", row["id"], len(part), model,
                            exc.message)
                return not isinstance(exc, QuotaExceeded)
            stored = json.dumps({"job": job.model_dump(mode="json"), "hold": record.hold_id})
            await anyio.to_thread.run_sync(
                lambda: self.store.add_job(row["id"], self.holder, job.request_id, stored, numbers))
        self.submitted += 1
        return True

    async def _settle(self, key: KeyRecord | None, hold_id: str | None, neurons: float | None, model: str,
                      calls: int) -> None:
        if key is None or hold_id is None:
            return
        await self.runner.ledger.settle(hold_id, key.id, neurons, model=model, calls=calls, now=time.time())

    # -- polling ----------------------------------------------------------------------------------------------

    async def _poll_all(self, row: Row, key: KeyRecord | None) -> None:
        settings = self.ctx.settings
        delay = max(0.0, settings.batch_queue_poll)
        failures: dict[str, int] = {}
        while jobs := await anyio.to_thread.run_sync(self.store.jobs, row["id"]):
            await self.sleep(delay * random.uniform(0.8, 1.2))  # jitter: many batches do not poll in step
            delay = min(max(delay * 2, 0.001), settings.batch_queue_poll_max)
            current = await anyio.to_thread.run_sync(self.store.load, row["id"])
            if self.ctx.now() >= (current["expires_at"] or 1 << 62):
                return  # the executor reports the lines still queued as batch_expired
            for job_id, text, numbers in jobs:
                stored = json.loads(text)
                job, hold = QueuedJob.model_validate(stored["job"]), stored.get("hold")
                try:
                    outcomes = await batch_queue.poll(self.ctx.for_request(RequestRecord()), job)
                except InvalidRequest as exc:  # the account does not know the job: run its lines live
                    log.warning("batch %s: Workers AI no longer knows queued job %s (%s); its unfinished lines "
                                "run live", row["id"], job_id, exc.message)
                    await self._settle(key, hold, None, job.model, 0)
                    await anyio.to_thread.run_sync(lambda: self.store.drop_job(row["id"], self.holder, job_id))  # noqa: B023
                    continue
                except CfaiError as exc:
                    failures[job_id] = failures.get(job_id, 0) + 1
                    if failures[job_id] < max(1, settings.batch_queue_poll_failures):
                        continue
                    log.warning("batch %s: queued job %s failed %d polls in a row: %s", row["id"], job_id,
                                failures[job_id], exc.message)
                    error = Outcome(exc.status, exc.to_openai())
                    for number, line in zip(numbers, job.lines, strict=True):
                        await self.record(row["id"], Line(number, line.custom_id, "{}"), error)
                    await self._settle(key, hold, None, job.model, 0)
                    await anyio.to_thread.run_sync(lambda: self.store.drop_job(row["id"], self.holder, job_id))  # noqa: B023
                    continue
                failures.pop(job_id, None)
                if outcomes is not None:
                    await self._finish(row["id"], key, job, hold, numbers, outcomes)

    async def _finish(self, batch_id: str, key: KeyRecord | None, job: QueuedJob, hold: str | None,
                      numbers: list[int], outcomes: list[batch_queue.LineOutcome]) -> None:
        by_id = {line.custom_id: number for number, line in zip(numbers, job.lines, strict=True)}
        written: list[batch_queue.LineOutcome] = []
        for outcome in outcomes:
            body: Any = outcome.body if outcome.body is not None else {"error": outcome.error}
            tokens = (outcome.usage.prompt_tokens, outcome.usage.completion_tokens)
            line = Line(by_id[outcome.custom_id], outcome.custom_id, "{}")
            if await self.record(batch_id, line, Outcome(outcome.status_code, body, tokens)):
                written.append(outcome)
        if written:  # only what was written now: a job polled again after a restart adds nothing twice
            for usage in batch_queue.usage_rows(job, written, now=time.time()):
                self.runner.sink(replace(usage, route=f"batch/{usage.route}"))
            neurons = [o.usage.neurons for o in outcomes if o.usage.neurons is not None]
            await self._settle(key, hold, sum(neurons) if neurons else None, job.model, len(outcomes))
            used = sum(o.usage.prompt_tokens + o.usage.completion_tokens for o in written)
            if key is not None and key.policy.tpm is not None and used:
                await self.runner.limiter.record_tokens(key.id, used, now=time.time())
        await anyio.to_thread.run_sync(lambda: self.store.drop_job(batch_id, self.holder, job.request_id))


def _planned(lines: Sequence[QueuedLine]) -> Units:
    """One line's expected use, the chunk's mean (for the budget hold of a model with no learned cost yet):
    about four characters a token in, the asked-for output or the default estimate out."""
    inputs = outputs = 0
    for line in lines:
        text = line.body.get("messages") or line.body.get("prompt")
        inputs += len(json.dumps(text or line.body.get("input") or "")) // 4
        if text is None:  # embeddings: nothing comes out but vectors
            continue
        limit = line.body.get("max_completion_tokens") or line.body.get("max_tokens")
        outputs += min(limit, DEFAULT_OUTPUT_TOKENS) if isinstance(limit, int) else DEFAULT_OUTPUT_TOKENS
    count = max(1, len(lines))
    return Units(input_tokens=inputs // count, output_tokens=outputs // count)
