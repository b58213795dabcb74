"""The queued lane of OpenAI batches: a group of lines for one model run as one Workers AI async batch
(`?queueRequest=true`, reference §2.11), resumable after a restart. The batch executor calls:

    queue_supported(model, endpoint, catalogue_entry) -> bool   does the model queue (docs' list, `async_queue`)?
    await supports_queue(ctx, model, endpoint) -> bool          the same, with the cached catalogue's entry
    queueable(endpoint, line) -> bool                           may this line go on the queue? If not, run it live
    plan_chunks(lines) -> [[line, ...], ...]                    queueable lines, each chunk's payload < 10 MB
    await submit(ctx, endpoint, model, chunk) -> QueuedJob      store job.model_dump_json() before anything else
    await poll(ctx, job) -> [LineOutcome, ...] | None           None while queued or running; then every line
    usage_rows(job, outcomes, now=...) -> [UsageRow, ...]       one usage-log row per line, for the job's key

`submit` is judged (the key's model policy) and charged as one upstream call on `ctx.record`, on the first
Cloudflare account that takes it; the job is pinned to that account (`account`), and `poll` asks only it (any
of its keys), uncharged, so a QueuedJob read back after a restart is polled with a fresh Context. `poll` raises
CfaiError when the poll itself fails: InvalidRequest (a 4xx: the account does not know the batch) is final,
anything else is worth polling again later. Each line's answer is translated by the live path's own
functions (core.translate.queued); a failed request is that line's LineOutcome error, the others unharmed.
Lines not queueable (streaming, n > 1, several prompts, images, forced tool calls, more texts than one
embeddings call takes, a line the live path would refuse, a line too large for a batch) run live instead:
the executor asks `queueable` and sends the rest through the normal path.
Imports core, errors, store (the usage row) and service.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from cfai_cli.core import jsonfast
from cfai_cli.core.cost import Units, estimate_neurons, reported_neurons, usd_of_neurons
from cfai_cli.core.translate.embeddings import EMBEDDING_MODELS
from cfai_cli.core.translate.queued import ENDPOINT_TASKS, ENDPOINTS, answer_line, item_error, plan_line
from cfai_cli.core.workers.queue import DOCUMENTED_QUEUE_MODELS, match_items, parse_queue_answer, queue_flag
from cfai_cli.errors import CfaiError, InvalidRequest
from cfai_cli.service.context import Context
from cfai_cli.service.cost import prices_for
from cfai_cli.service.models import ModelInfo, catalogue
from cfai_cli.store.usage import UsageRow

# A chunk's lines add up to at most this many bytes of OpenAI JSON (plus LINE_SLACK each): a tenth under
# Workers AI's 10 MB, for what translation adds (max_tokens, native tool wrappers); the client refuses a
# payload that still reaches 10 MB (upstream.workers_account.MAX_QUEUE_BYTES).
CHUNK_BYTES = 9_000_000
LINE_SLACK = 256
CHUNK_LINES = 1000  # cfai's own cap on requests per upstream batch (none is documented): smaller polls


class QueuedLine(BaseModel):
    """One OpenAI batch line, parsed: its body's `model` already resolved to the Workers AI id."""

    custom_id: str
    body: dict[str, Any]


class QueuedJob(BaseModel):
    """One Workers AI async batch, JSON-serialisable: the executor stores it and polls it after a restart.
    `lines` keep each line's body, from which its answer is translated back (the request's options)."""

    endpoint: str
    model: str
    account: str  # the Cloudflare upstream that accepted it: every poll goes there
    request_id: str
    key_id: str | None = None  # whose usage the lines are
    submitted_at: float = 0.0
    default_max_tokens: int  # as at submission, so re-planning a line gives the body that was sent
    lines: list[QueuedLine]


class LineUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    neurons: float | None = None  # None: no known price and nothing reported
    neurons_estimated: bool = False  # from published prices (service.cost), not reported by Workers AI


class LineOutcome(BaseModel):
    """A line's answer: `body` (chat.completion, embeddings list or text_completion) with status 200, or the
    OpenAI error object (`{message, type, param, code}`) in `error` with the status the live path would give."""

    custom_id: str
    status_code: int
    body: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    usage: LineUsage = Field(default_factory=LineUsage)


# ---- which models and lines ---------------------------------------------------------------------------


def _entry_facts(entry: Mapping[str, Any] | ModelInfo) -> tuple[str | None, bool]:
    """(task name, flagged async_queue) of a catalogue entry: a raw /ai/models/search item or a ModelInfo."""
    if isinstance(entry, ModelInfo):
        return entry.task or None, entry.async_queue
    task = entry.get("task")
    name = task.get("name") if isinstance(task, Mapping) else task
    flagged = any(isinstance(p, Mapping) and p.get("property_id") == "async_queue" and queue_flag(p.get("value"))
                  for p in entry.get("properties") or [])
    return (str(name) if name else None), flagged


def queue_supported(model: str, endpoint: str, catalogue_entry: Mapping[str, Any] | ModelInfo | None) -> bool:
    """True if `model` takes Workers AI's async batch for `endpoint`: listed in the docs, or flagged `async_queue`
    ("true" or true) in its catalogue entry, and of the endpoint's task (Text Generation for chat and legacy
    completions, Text Embeddings for embeddings: m2m100 queues, but no OpenAI endpoint here reaches it)."""
    wanted = ENDPOINT_TASKS.get(endpoint)
    documented = DOCUMENTED_QUEUE_MODELS.get(model)
    if wanted is None:
        return False
    if catalogue_entry is None:
        return documented == wanted
    task, flagged = _entry_facts(catalogue_entry)
    task = task or documented or ("Text Embeddings" if model in EMBEDDING_MODELS else None)
    return (flagged or documented is not None) and task == wanted


async def supports_queue(ctx: Context, model: str, endpoint: str) -> bool:
    """`queue_supported` with the model's entry in the catalogue (cached ten minutes); the docs' list alone when
    the catalogue cannot be fetched."""
    try:
        models = await catalogue(ctx)
    except CfaiError:
        models = []
    return queue_supported(model, endpoint, next((m for m in models if m.id == model), None))


def _size(line: QueuedLine) -> int:
    return len(jsonfast.dumps(line.body)) + LINE_SLACK


def queueable(endpoint: str, line: QueuedLine) -> bool:
    """True if `line` can be one request of an async batch (see the module docstring); False: run it live."""
    model = line.body.get("model")
    if endpoint not in ENDPOINTS or not isinstance(model, str) or _size(line) > CHUNK_BYTES:
        return False
    return plan_line(endpoint, line.body, model, default_max_tokens=1) is not None


def plan_chunks(lines: Sequence[QueuedLine]) -> list[list[QueuedLine]]:
    """Queueable lines in order, cut into chunks of at most CHUNK_LINES lines and CHUNK_BYTES bytes."""
    chunks: list[list[QueuedLine]] = []
    size = 0
    for line in lines:
        grown = _size(line)
        if not chunks or len(chunks[-1]) >= CHUNK_LINES or size + grown > CHUNK_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(line)
        size += grown
    return chunks


# ---- submitting and polling ---------------------------------------------------------------------------


async def submit(ctx: Context, endpoint: str, model: str, lines: Sequence[QueuedLine]) -> QueuedJob:
    """Queue `lines` (queueable ones, of one chunk) as one async batch of `model` (a Workers AI id)."""
    if endpoint not in ENDPOINTS:
        raise InvalidRequest(f"{endpoint!r} cannot run on Workers AI's async batch: use one of "
                             f"{', '.join(ENDPOINTS)}.", param="endpoint")
    if not lines:
        raise InvalidRequest("An async batch needs at least one line.", param="lines")
    default_max_tokens = ctx.settings.default_max_tokens
    requests = []
    for index, line in enumerate(lines):
        native = plan_line(endpoint, line.body, model, default_max_tokens=default_max_tokens)
        if native is None:
            raise InvalidRequest(f"Line {line.custom_id!r} cannot go on Workers AI's async batch; run it live.",
                                 param="custom_id", code="not_queueable")
        # The index, not the custom_id: short, and free of whatever characters a client chose.
        requests.append({**native, "external_reference": str(index)})
    if ctx.record.asked is None:
        ctx.record.asked = model
    request_id, account = await ctx.workers.queue(model, requests)
    return QueuedJob(endpoint=endpoint, model=model, account=account, request_id=request_id,
                     key_id=ctx.record.key_id, submitted_at=ctx.clock(), default_max_tokens=default_max_tokens,
                     lines=list(lines))


async def poll(ctx: Context, job: QueuedJob) -> list[LineOutcome] | None:
    """The job's lines' outcomes once Workers AI has finished the batch, in the job's order; None before."""
    result, reported = await ctx.workers.poll_queue(job.account, job.model, job.request_id)
    answer = parse_queue_answer(result)
    if answer.items is None:
        return None
    outcomes: list[LineOutcome] = []
    measured: list[float | None] = []
    for line, item in zip(job.lines, match_items(answer.items, len(job.lines)), strict=True):
        measured.append(reported_neurons(None, item.result) if item is not None and item.success else None)
        try:
            if item is None or not item.success:
                raise item_error(item, job.model)
            done = answer_line(job.endpoint, line.body, job.model, item.result,
                               default_max_tokens=job.default_max_tokens, new_id=ctx.ids, created=ctx.now())
        except CfaiError as exc:
            exc.message = ctx.router.scrubber.text(exc.message)
            outcomes.append(LineOutcome(custom_id=line.custom_id, status_code=exc.status,
                                        error=exc.to_openai()["error"]))
            continue
        outcomes.append(LineOutcome(custom_id=line.custom_id, status_code=200, body=done.body,
                                    usage=LineUsage(prompt_tokens=done.prompt_tokens,
                                                    completion_tokens=done.completion_tokens)))
    _price(ctx, job.model, outcomes, measured, reported)
    return outcomes


def _price(ctx: Context, model: str, outcomes: list[LineOutcome], measured: list[float | None],
           total: float | None) -> None:
    """Each answered line's neurons: its own `usage.neurons` when every answered request reported one; else the
    batch's reported total shared in proportion to the lines' estimates (or tokens); else each line's estimate
    from published prices (service.cost), as a live request's would be."""
    answered = [i for i, outcome in enumerate(outcomes) if outcome.status_code == 200]
    prices = prices_for(ctx.cache, model)
    estimates = {i: estimate_neurons(prices, Units(input_tokens=outcomes[i].usage.prompt_tokens,
                                                   output_tokens=outcomes[i].usage.completion_tokens))
                 if prices is not None else None for i in answered}
    own = [measured[i] for i in answered]
    if answered and all(n is not None for n in own):
        for i in answered:
            outcomes[i].usage.neurons = measured[i]
        return
    if total is not None and answered:
        weights = {i: estimates[i] or 0.0 for i in answered}
        if not sum(weights.values()):
            weights = {i: float(outcomes[i].usage.prompt_tokens + outcomes[i].usage.completion_tokens)
                       for i in answered}
        whole = sum(weights.values())
        for i in answered:
            share = weights[i] / whole if whole else 1 / len(answered)
            outcomes[i].usage.neurons = round(total * share, 6)
        return
    for i in answered:
        if estimates[i] is not None:
            outcomes[i].usage.neurons, outcomes[i].usage.neurons_estimated = estimates[i], True


def usage_rows(job: QueuedJob, outcomes: Sequence[LineOutcome], *, now: float) -> list[UsageRow]:
    """One usage-log row per line, as a live request to the line's endpoint would leave: the job's key, the
    account that served, tokens and neurons; latency is the time since submission."""
    bodies = {line.custom_id: line.body for line in job.lines}
    route = job.endpoint.removeprefix("/v1/")
    rows = []
    for outcome in outcomes:
        answer = outcome.body if outcome.body is not None else {"error": outcome.error}
        code = outcome.error.get("code") or outcome.error.get("type") if outcome.error else None
        neurons = outcome.usage.neurons
        rows.append(UsageRow(
            ts=now, key_id=job.key_id, route=route, model=job.model, upstream_model=job.model,
            status=outcome.status_code, prompt_tokens=outcome.usage.prompt_tokens,
            completion_tokens=outcome.usage.completion_tokens,
            latency_ms=round(max(0.0, now - job.submitted_at) * 1000, 2),
            bytes_in=len(jsonfast.dumps(bodies.get(outcome.custom_id, {}))), bytes_out=len(jsonfast.dumps(answer)),
            error_code=None if code is None else str(code), upstream=job.account, neurons=neurons,
            neurons_estimated=outcome.usage.neurons_estimated,
            cost_usd=None if neurons is None else usd_of_neurons(neurons), account=job.account))
    return rows
