"""OpenAI's Files and Batch API on the wire: the create request, the JSONL input lines, the objects we emit.

Pure: pydantic, the standard library, core.jsonfast and errors. Ids and times are passed in. The input file
of a batch is checked line by line (`check_line`), each error naming its line number as OpenAI's do
(`line 17: ...`); the `Batch` and `File` objects are rendered from plain values with absent fields left out
(the spec types them as strings and integers, not nullable), and output lines take OpenAI's shape
`{"id", "custom_id", "response": {"status_code", "request_id", "body"} | null, "error": {...} | null}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from cfai_cli.core import jsonfast
from cfai_cli.core.openai.base import WireModel
from cfai_cli.errors import InvalidRequest

ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/responses")
FILE_PURPOSES = ("batch", "user_data")  # what a client may upload; batch_output is ours
COMPLETION_WINDOWS = ("24h",)
WINDOW_SECONDS = {"24h": 86400}
MAX_METADATA_PAIRS, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 512
MAX_CUSTOM_ID = 512
# A batch's states; the last four are final.
FINAL = frozenset({"completed", "failed", "expired", "cancelled"})

Json = dict[str, Any]


class CreateBatchRequest(WireModel):
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None = None
    output_expires_after: Json | None = Field(default=None)

    def check(self) -> None:
        if self.endpoint not in ENDPOINTS:
            raise InvalidRequest(f"Invalid value for 'endpoint': {self.endpoint[:80]!r}; cfai runs batches for "
                                 f"{', '.join(ENDPOINTS)}.", param="endpoint", code="invalid_value")
        if self.completion_window not in COMPLETION_WINDOWS:
            raise InvalidRequest(f"Invalid value for 'completion_window': {self.completion_window[:20]!r}; the only "
                                 "supported window is '24h'.", param="completion_window", code="invalid_value")
        check_metadata(self.metadata)


def check_metadata(metadata: Mapping[str, str] | None) -> None:
    if not metadata:
        return
    if len(metadata) > MAX_METADATA_PAIRS:
        raise InvalidRequest(f"'metadata' may hold at most {MAX_METADATA_PAIRS} pairs, not {len(metadata)}.",
                             param="metadata", code="invalid_value")
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY or len(value) > MAX_METADATA_VALUE:
            raise InvalidRequest(f"'metadata' keys are at most {MAX_METADATA_KEY} characters and values at most "
                                 f"{MAX_METADATA_VALUE}.", param="metadata", code="invalid_value")


class LineError(ValueError):
    """One input line that is not a batch request; `str()` starts with `line N: `."""

    def __init__(self, line: int, message: str, param: str | None = None) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.param = param


def check_line(raw: bytes, number: int) -> tuple[str, str, Json]:
    """(custom_id, url, body) of one JSONL input line, or a LineError naming `number` (1-based)."""
    try:
        item = jsonfast.loads(raw)
    except ValueError:
        raise LineError(number, "not valid JSON.") from None
    if not isinstance(item, dict):
        raise LineError(number, "each line must be a JSON object.")
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise LineError(number, "'custom_id' must be a non-empty string.", "custom_id")
    if len(custom_id) > MAX_CUSTOM_ID:
        raise LineError(number, f"'custom_id' is longer than {MAX_CUSTOM_ID} characters.", "custom_id")
    if item.get("method") != "POST":
        raise LineError(number, "'method' must be \"POST\".", "method")
    url = item.get("url")
    if url not in ENDPOINTS:
        raise LineError(number, f"'url' must be one of {', '.join(ENDPOINTS)}.", "url")
    body = item.get("body")
    if not isinstance(body, dict):
        raise LineError(number, "'body' must be a JSON object.", "body")
    return custom_id, str(url), body


class LineChecker:
    """Checks the lines of one input file in order: each line, unique custom_ids, the line count bound."""

    def __init__(self, max_lines: int) -> None:
        self.max_lines = max_lines
        self.count = 0
        self.seen: set[str] = set()

    def add(self, raw: bytes) -> tuple[str, str, Json] | None:
        """The line's request, None for a blank line, or a LineError."""
        self.count += 1
        if not raw.strip():
            return None
        custom_id, url, body = check_line(raw, self.count)
        if len(self.seen) >= self.max_lines:  # requests, not line numbers: blank lines are free
            raise LineError(self.count, f"a batch file holds at most {self.max_lines} requests.")
        if custom_id in self.seen:
            raise LineError(self.count, f"'custom_id' {custom_id[:80]!r} is used by an earlier line; each "
                                        "must be unique.", "custom_id")
        self.seen.add(custom_id)
        return custom_id, url, body


def file_object(*, file_id: str, size: int, created_at: int, filename: str, purpose: str,
                expires_at: int | None = None) -> Json:
    out: Json = {"id": file_id, "object": "file", "bytes": size, "created_at": created_at, "filename": filename,
                 "purpose": purpose, "status": "processed"}
    if expires_at is not None:
        out["expires_at"] = expires_at
    return out


BatchStatus = Literal["validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling",
                      "cancelled"]
TIMESTAMPS = ("in_progress_at", "expires_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
              "cancelling_at", "cancelled_at")


def batch_object(row: Mapping[str, Any]) -> Json:
    """OpenAI's Batch object from a stored batch (store.batches), absent fields left out."""
    out: Json = {"id": row["id"], "object": "batch", "endpoint": row["endpoint"],
                 "input_file_id": row["input_file_id"], "completion_window": row["completion_window"],
                 "status": row["status"], "created_at": row["created_at"]}
    if row.get("errors"):
        out["errors"] = {"object": "list", "data": row["errors"]}
    for name in ("output_file_id", "error_file_id", *TIMESTAMPS):
        if row.get(name) is not None:
            out[name] = row[name]
    out["request_counts"] = {"total": row.get("total", 0), "completed": row.get("completed", 0),
                             "failed": row.get("failed", 0)}
    out["metadata"] = row.get("metadata") or None
    if row.get("usage") is not None:
        usage = row["usage"]
        out["usage"] = {"input_tokens": usage[0], "input_tokens_details": {"cached_tokens": 0},
                        "output_tokens": usage[1], "output_tokens_details": {"reasoning_tokens": 0},
                        "total_tokens": usage[0] + usage[1]}
    return out


def output_line(*, line_id: str, custom_id: str, status_code: int | None, body: Any, request_id: str | None,
                error: Json | None = None) -> Json:
    """One line of a batch's output or error file: a response when the request ran, else only an error."""
    response = None if status_code is None else {"status_code": status_code, "request_id": request_id or "",
                                                 "body": body}
    return {"id": line_id, "custom_id": custom_id, "response": response, "error": error}
