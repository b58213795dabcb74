"""Workers AI's async batch (`?queueRequest=true`, reference §2.11), emulated: queue, poll, answers per request.

Imports only the standard library and the emulator's own modules. A batch is
`{"requests": [{...the model's input..., "external_reference": "..."}]}` for a model that queues (the docs' list
and catalogue entries flagged `async_queue` "true" or true); the answer is `{"status": "queued", "request_id",
"model"}`. Polling with `{"request_id": ...}` (with or without `?queueRequest=true`) answers `queued` on the
first poll, `running` on the second, then the responses on every later one: `{"responses": [{"id", "result",
"success", "external_reference"}], "usage"}`, an invalid request failing alone with `success: false` and the
`errors` its live call would give (that shape is UNCONFIRMED). A finished text-generation batch carries the
`cf-ai-neurons` its requests would have billed (emulator.billing). Decisions where the reference is silent: a
model without the queue is refused 400/5006 (its input schema has no `requests`), an unknown request id
400/5006, and a payload of 10,000,000 bytes or more 413/3006 ("Request too large", reference §1.4).
Batches live for the process, not the app: Workers AI outlives the cfai that queued them (a restarted cfai,
with a fresh emulator app, still finds its batches); the oldest are forgotten past MAX_BATCHES.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cfai_cli.emulator.asgi import Response, StreamingResponse
from cfai_cli.emulator.catalogue import CATALOGUE, TASK_OF
from cfai_cli.emulator.wire import EmulatorError, bad_input, digest, envelope, json_response

MAX_BYTES = 10_000_000  # "under 10 MB" (reference §2.11), read as decimal megabytes
MAX_BATCHES = 1000
POLLS_PENDING = ("queued", "running")  # what the first polls of a batch answer, in order
DOCUMENTED = frozenset({"@cf/meta/llama-3.3-70b-instruct-fp8-fast", "@cf/baai/bge-small-en-v1.5",
                        "@cf/baai/bge-base-en-v1.5", "@cf/baai/bge-large-en-v1.5", "@cf/baai/bge-m3",
                        "@cf/meta/m2m100-1.2b"})

Run = Callable[[str, Mapping[str, Any], bytes], Response]  # one live /ai/run call (emulator.app.run_model)


def _flagged(item: Mapping[str, Any]) -> bool:
    for prop in item["properties"]:
        if prop["property_id"] == "async_queue":
            value = prop["value"]
            return value is True or (isinstance(value, str) and value.strip().lower() == "true")
    return False


QUEUE_MODELS = DOCUMENTED | frozenset(item["name"] for item in CATALOGUE if _flagged(item))


@dataclass(slots=True)
class _Batch:
    model: str
    responses: list[dict[str, Any]]
    usage: dict[str, int]
    neurons: float | None
    polls: int = 0


_BATCHES: OrderedDict[str, _Batch] = OrderedDict()
_SEQUENCE = itertools.count()


def is_poll(body: Mapping[str, Any]) -> bool:
    return "request_id" in body and "requests" not in body


def handle(model: str, raw: bytes, body: Mapping[str, Any] | None, run: Run) -> Response:
    """A queued submission or a poll to /ai/run/{model}; `body` is the parsed JSON (None if `raw` is not)."""
    if len(raw) >= MAX_BYTES:
        raise EmulatorError(413, 3006, f"AiError: Request too large: an async batch must be under {MAX_BYTES:,} "
                                       f"bytes (got {len(raw):,})")
    if body is None:
        raise bad_input("the request body is not valid JSON")
    if is_poll(body):
        return poll(model, body)
    if model not in TASK_OF:
        raise EmulatorError(400, 5007, f"AiError: No such model: No such model {model} or task")
    if model not in QUEUE_MODELS:
        raise bad_input(f"{model} does not take queued requests (queueRequest=true): required properties at '/' "
                        "are the model's own input, not 'requests'")
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests or not all(isinstance(r, dict) for r in requests):
        raise bad_input("'/requests' must be a non-empty array of objects")
    seed = digest(model, raw, str(next(_SEQUENCE)))
    request_id = str(uuid.UUID(bytes=digest(b"batch", seed)[:16], version=4))
    batch = _Batch(model, [], {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}, None)
    for index, request in enumerate(requests):
        batch.responses.append(_answer(model, index, request, seed, run, batch))
    _BATCHES[request_id] = batch
    while len(_BATCHES) > MAX_BATCHES:
        _BATCHES.popitem(last=False)
    return json_response(envelope({"status": "queued", "request_id": request_id, "model": model}))


def _answer(model: str, index: int, request: Mapping[str, Any], seed: bytes, run: Run, batch: _Batch
            ) -> dict[str, Any]:
    reference = request.get("external_reference")
    out: dict[str, Any] = {"id": index, "external_reference": reference}
    item = {key: value for key, value in request.items() if key != "external_reference"}
    try:
        if item.get("stream"):
            raise bad_input("'/stream' is not allowed in a queued request")
        response = run(model, item, seed + index.to_bytes(4, "big"))
    except EmulatorError as error:
        return out | {"success": False, "result": None, "errors": [{"code": error.code, "message": error.message}]}
    if isinstance(response, StreamingResponse):  # an answer that streams cannot wait in a queue
        return out | {"success": False, "result": None,
                      "errors": [{"code": 5006, "message": "AiError: Bad input: streaming is not queued"}]}
    answer = json.loads(bytes(response.body))
    if response.status_code != 200 or not answer.get("success", True):
        errors = answer.get("errors") or [{"code": 3000, "message": "the request failed"}]
        return out | {"success": False, "result": None, "errors": errors}
    result = answer.get("result")
    usage = result.get("usage") if isinstance(result, dict) else None
    if isinstance(usage, dict):
        for key in batch.usage:
            value = usage.get(key)
            batch.usage[key] += value if isinstance(value, int) else 0
    billed = response.headers.get("cf-ai-neurons")
    if billed is not None:
        batch.neurons = round((batch.neurons or 0.0) + float(billed), 6)
    return out | {"success": True, "result": result}


def poll(model: str, body: Mapping[str, Any]) -> Response:
    request_id = body.get("request_id")
    batch = _BATCHES.get(request_id) if isinstance(request_id, str) else None
    if batch is None or batch.model != model:
        raise bad_input(f"no queued request with request_id {request_id!r} for {model}")
    batch.polls += 1
    if batch.polls <= len(POLLS_PENDING):
        status = POLLS_PENDING[batch.polls - 1]
        return json_response(envelope({"status": status, "request_id": request_id, "model": model}))
    headers = {"cf-ai-neurons": repr(batch.neurons)} if batch.neurons is not None else {}
    return json_response(envelope({"responses": batch.responses, "usage": dict(batch.usage)}), headers=headers)
