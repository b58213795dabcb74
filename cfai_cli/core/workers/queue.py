"""Workers AI's async batch (`?queueRequest=true`, reference §2.11), read leniently: which models queue, the
answer to a submission, and the answers to a poll.

Pure: standard library and cfai_cli.errors. A poll answers `{"status": "queued" | "running", ...}` until the
batch is done, then `{"responses": [{"id", "result", "success", "external_reference"}, ...], "usage": {...}}`.
How a failed item looks is UNCONFIRMED: `errors` (a list like the envelope's), `error` (an object or a string)
and a bare `message` are all read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cfai_cli.errors import UpstreamError

# The models the docs list for the async batch (reference §2.11), with their task; the catalogue's `async_queue`
# flag marks others (UNCONFIRMED that it means the same), and this list wins where the catalogue says nothing.
DOCUMENTED_QUEUE_MODELS: dict[str, str] = {
    "@cf/meta/llama-3.3-70b-instruct-fp8-fast": "Text Generation",
    "@cf/baai/bge-small-en-v1.5": "Text Embeddings",
    "@cf/baai/bge-base-en-v1.5": "Text Embeddings",
    "@cf/baai/bge-large-en-v1.5": "Text Embeddings",
    "@cf/baai/bge-m3": "Text Embeddings",
    "@cf/meta/m2m100-1.2b": "Translation",
}
PENDING = frozenset({"queued", "running"})


def queue_flag(value: object) -> bool:
    """The catalogue's `async_queue` property: the real catalogue sends the string "true" (reference §9.1);
    a JSON boolean true counts too. Anything else ("false", "", numbers, absent) does not."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One request's answer in a finished batch: its `result` when `success`, else Cloudflare's code and message."""

    position: int  # where it came in the `responses` list
    id: int | None  # Workers AI's index of the request in the batch
    reference: str | None  # the `external_reference` it was sent with
    success: bool
    result: Any
    code: int | str | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class QueueAnswer:
    """A poll's answer: `items` is None while the batch is `status` queued or running."""

    status: str
    items: list[QueueItem] | None
    usage: Mapping[str, Any] | None = None


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _failure(raw: Mapping[str, Any]) -> tuple[int | str | None, str]:
    errors = raw.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
        code = errors[0].get("code")
        return (_as_int(code) if _as_int(code) is not None else code if isinstance(code, str) else None,
                str(errors[0].get("message") or "the request failed"))
    error = raw.get("error")
    if isinstance(error, Mapping):
        code = error.get("code")
        return (_as_int(code) if _as_int(code) is not None else code if isinstance(code, str) else None,
                str(error.get("message") or "the request failed"))
    if isinstance(error, str) and error:
        return None, error
    message = raw.get("message")
    return None, str(message) if isinstance(message, str) and message else "the request failed"


def _item(position: int, raw: object) -> QueueItem:
    if not isinstance(raw, Mapping):
        return QueueItem(position, None, None, False, None, message="Workers AI answered the request with "
                                                                        "something other than an object")
    reference = raw.get("external_reference")
    ident = _as_int(raw.get("id"))
    has_error = bool(raw.get("errors")) or raw.get("error") not in (None, "", {})
    success = raw.get("success") is not False and not has_error and "result" in raw
    if success:
        return QueueItem(position, ident, None if reference is None else str(reference), True, raw["result"])
    code, message = _failure(raw)
    return QueueItem(position, ident, None if reference is None else str(reference), False, None, code, message)


def parse_queue_answer(result: object) -> QueueAnswer:
    """A poll's unwrapped `result`. Raises UpstreamError for a batch that failed whole or an answer that is
    neither pending nor finished."""
    if not isinstance(result, Mapping):
        raise UpstreamError("Workers AI answered an async batch poll with something other than an object.")
    responses = result.get("responses")
    status = str(result.get("status") or "").strip().lower()
    if isinstance(responses, list):
        usage = result.get("usage")
        return QueueAnswer(status or "done", [_item(i, r) for i, r in enumerate(responses)],
                           usage if isinstance(usage, Mapping) else None)
    if status in PENDING:
        return QueueAnswer(status, None)
    code, message = _failure(result)
    shown = f" ({code}: {message})" if code is not None or message != "the request failed" else ""
    raise UpstreamError(f"Workers AI answered an async batch poll with status {status or 'none'!r} and no "
                        f"responses{shown}.", upstream_code=code)


def match_items(items: Sequence[QueueItem], count: int) -> list[QueueItem | None]:
    """Each of the `count` requests sent (their `external_reference` was their index) with its answer, or None
    where none came back. Matched by external_reference, else by Workers AI's `id`, else by position."""
    matched: list[QueueItem | None] = [None] * count
    for item in items:
        index = _as_int(item.reference) if item.reference is not None else None
        if index is None:
            index = item.id
        if index is None and len(items) == count:
            index = item.position
        if index is not None and 0 <= index < count and matched[index] is None:
            matched[index] = item
    return matched
