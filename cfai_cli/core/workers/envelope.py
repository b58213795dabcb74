"""The Cloudflare v4 envelope and Workers AI error codes, mapped onto cfai's error tree.

Pure: standard library and cfai_cli.errors. `upstream` feeds it status, headers and body; what comes
back is either the `result` value or a raised CfaiError that keeps Cloudflare's code and message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cfai_cli.core import jsonfast
from cfai_cli.errors import (
    CfaiError,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    RequestTooLarge,
    UpstreamAuthError,
    UpstreamError,
    UpstreamTimeout,
)

QUOTA_CODES = frozenset({3036, 4006})
CAPACITY_CODES = frozenset({3040})
AUTH_CODES = frozenset({10000, 10001, 9106, 9109, 2009})
# Compiled on first use (re's cache): not at import, where every one-shot command paid for it.
_UUID_TAIL = r"\s*\([0-9a-f-]{8,}\)\s*$"


def _as_int(code: Any) -> int | None:
    if isinstance(code, bool):
        return None
    if isinstance(code, int):
        return code
    if isinstance(code, str) and code.strip().isdigit():
        return int(code.strip())
    return None


def first_error(body: Mapping[str, Any]) -> tuple[int | str | None, str]:
    """(code, message) of the first error in either the CF envelope or an OpenAI-style body."""
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
        err = errors[0]
        code = err.get("code")
        num = _as_int(code)
        return (num if num is not None else (str(code) if code is not None else None),
                str(err.get("message") or "unknown error"))
    error = body.get("error")
    if isinstance(error, Mapping):
        code = error.get("code")
        num = _as_int(code)
        return (num if num is not None else (str(code) if code is not None else None),
                str(error.get("message") or "unknown error"))
    if isinstance(error, str):
        return None, error
    return None, "unknown error"


def clean_message(message: str) -> str:
    """Drop the repeated 'AiError: ' prefix and trailing request uuid, keep the substance."""
    text = message.strip()
    while text.startswith("AiError: "):
        text = text[len("AiError: ") :]
    return re.sub(_UUID_TAIL, "", text)


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a `Retry-After: <seconds>` header (any capitalisation; dates are ignored: no clock here)."""
    value = headers.get("retry-after")
    if value is None:
        # httpx.Headers is case-insensitive; a plain mapping may keep the wire's capitalisation.
        value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def map_error(status: int, code: int | str | None, message: str, *, retry_after: float | None = None,
              model: str | None = None) -> CfaiError:
    """One Workers AI failure as a cfai error (status, OpenAI type, exit code all follow from the class)."""
    num = _as_int(code)
    shown = f"Workers AI error {code}: {clean_message(message)}" if code is not None else (
        f"Workers AI error (HTTP {status}): {clean_message(message)}")
    if num in QUOTA_CODES:
        return QuotaExceeded(shown + " The daily allocation resets at 00:00 UTC.", upstream_code=code,
                             retry_after=retry_after)
    if num in CAPACITY_CODES or status == 429:
        return RateLimited(shown, upstream_code=code, retry_after=retry_after)
    if num in AUTH_CODES or status == 401:
        return UpstreamAuthError(
            shown + " Check CLOUDFLARE_API_TOKEN (it needs Workers AI Read and Edit) and CLOUDFLARE_ACCOUNT_ID.",
            upstream_code=code)
    if num in (5007, 3042) or (num is None and "no such model" in message.lower()):
        what = f"The model {model!r} does not exist on Workers AI" if model else "No such model"
        return ModelNotFound(f"{what} ({shown}).", param="model", upstream_code=code)
    if num in (3007, 3008, 3046) or status in (408, 504):
        return UpstreamTimeout(shown, upstream_code=code)
    if num == 3006 or status == 413:
        return RequestTooLarge(shown, upstream_code=code)
    if status == 403 or num in (5016, 5018, 3023, 3041, 5035):
        return PermissionDenied(shown, upstream_code=code)
    if 400 <= status < 500 or num in (5006, 5004, 3030, 3003, 5012, 5005, 5019):
        return InvalidRequest(shown, upstream_code=code)
    return UpstreamError(shown, upstream_code=code, retry_after=retry_after)


def is_retryable(error: CfaiError) -> bool:
    """Transient failures worth another try within the deadline; the daily quota never is."""
    if isinstance(error, QuotaExceeded):
        return False
    if isinstance(error, RateLimited):
        return _as_int(error.upstream_code) in CAPACITY_CODES
    return type(error) is UpstreamError


_MARKUP_STARTS = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"<!--")


def looks_like_html(content_type: str, body: bytes) -> bool:
    """An error page from a proxy or Cloudflare's edge, whatever content type it was served with."""
    head = body[:64].removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    return "html" in content_type.lower() or head.startswith(_MARKUP_STARTS)


def _not_workers_ai(status: int, message: str, retry_after: float | None, model: str | None) -> CfaiError:
    """A failure whose body is no Workers AI envelope: something in between answered (a proxy, a gateway).

    The status still tells auth, size, rate and time problems apart; anything else, a 404 from a wrong
    CFAI_API_BASE included, is the upstream's failure (502), not the client's.
    """
    if status in (401, 403, 408, 413, 429, 504) or status >= 500:
        return map_error(status, None, message, retry_after=retry_after, model=model)
    return UpstreamError(f"Workers AI answered HTTP {status}: {message}", retry_after=retry_after)


def decode_json_result(status: int, content_type: str, body: bytes, headers: Mapping[str, str], *,
                       model: str | None = None) -> Any:
    """Unwrap a JSON answer of /ai/run or /ai/models/search, or raise the mapped error."""
    retry_after = parse_retry_after(headers)
    if looks_like_html(content_type, body):
        # The markup never reaches the client, whatever the status.
        raise _not_workers_ai(status, f"the upstream answered with an HTML page (HTTP {status})", retry_after, model)
    try:
        data = jsonfast.loads(body)
    except ValueError:
        if status >= 400:
            snippet = body[:200].decode("utf-8", "replace").strip() or "empty body"
            raise _not_workers_ai(status, snippet, retry_after, model) from None
        raise UpstreamError(f"Workers AI answered HTTP {status} with a body that is not JSON.") from None
    if not isinstance(data, dict):
        raise UpstreamError(f"Workers AI answered HTTP {status} with unexpected JSON (not an object).")
    if status >= 400 or data.get("success") is False or ("error" in data and "result" not in data):
        code, message = first_error(data)
        raise map_error(status, code, message, retry_after=retry_after, model=model)
    if "result" not in data:
        # Some compatibility paths answer a bare object; accept it as the result (lenient in).
        return data
    return data["result"]


def decode_binary_result(status: int, content_type: str, body: bytes, headers: Mapping[str, str], *,
                         model: str | None = None) -> tuple[bytes | None, str, Any]:
    """An answer that may be raw bytes (audio, images) or a JSON envelope: (bytes or None, content type, result).

    Binary models still send errors (and some, like MeloTTS, their results) as JSON envelopes (reference §1.2,
    §8), so only a successful non-JSON, non-HTML body counts as bytes; everything else goes through
    `decode_json_result`, which raises the mapped error.
    """
    kind = content_type.split(";")[0].strip().lower()
    is_json = kind == "application/json" or kind.endswith("+json") or body[:1] == b"{"
    if status < 400 and not is_json and not looks_like_html(content_type, body):
        return body, kind or "application/octet-stream", None
    return None, kind, decode_json_result(status, content_type, body, headers, model=model)
