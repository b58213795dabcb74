"""One exception tree for all of cfai; every front end maps it at exactly one boundary.

    CfaiError                       500 server_error          exit 1
    ├── InvalidRequest              400 invalid_request_error exit 4
    │   ├── RequestTooLarge         413                       exit 4
    │   ├── UnsupportedMediaType    415 (not JSON/multipart)  exit 4
    │   ├── RequestTimeout          408 (body too slow)       exit 4
    │   ├── NotFound                404                       exit 4
    │   │   └── ModelNotFound       404 code=model_not_found  exit 4
    │   ├── MethodNotAllowed        405                       exit 4
    │   └── Conflict                409 (e.g. the last admin key) exit 4
    ├── AuthenticationError         401 invalid_api_key       exit 3
    ├── PermissionDenied            403 permission_error      exit 4
    ├── ConfigError                 500 server_error          exit 3
    │   └── StoreUnavailable        503 code=store_unavailable exit 3 (the PostgreSQL store, at run time)
    ├── Overloaded                  503 server_error          exit 5 (the proxy's concurrency cap)
    ├── ToolCallFailed              502 code=tool_call_failed exit 5 (a forced tool call never came)
    └── UpstreamError               502 api_error             exit 5
        ├── UpstreamAuthError       502 code=upstream_auth    exit 3
        ├── UpstreamTimeout         504 code=timeout          exit 6
        ├── UpstreamStreamError     502 (mid-stream failure)  exit 5
        └── RateLimited             429 rate_limit_exceeded   exit 7
            └── QuotaExceeded       429 insufficient_quota    exit 7 (final: never retried)

Anthropic routes answer with `to_anthropic()` and `anthropic_status` instead: the same errors in Anthropic's
words, with capacity errors (Overloaded, Workers AI's 3040) as its 529 overloaded_error.

Imports only the standard library: it sits beneath every other module.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, ClassVar


class ExitCode(IntEnum):
    """Exit statuses of the `cfai` command (documented in `cfai --help` and the README)."""

    OK = 0
    ERROR = 1  # unexpected failure inside cfai
    USAGE = 2  # bad flags or arguments
    CONFIG = 3  # missing or invalid configuration or credentials
    INVALID_REQUEST = 4  # the request was rejected (cfai or Workers AI said 4xx)
    UPSTREAM = 5  # Workers AI failed or could not be reached
    TIMEOUT = 6  # no answer within the deadline
    RATE_LIMITED = 7  # rate limit or daily quota reached
    FLAGGED = 10  # `cfai moderate`: the guard model flagged the text (not an error)
    INTERRUPTED = 130  # Ctrl-C


EXIT_CODE_HELP = (
    "Exit statuses: 0 ok, 1 internal error, 2 bad usage, 3 configuration or credentials, "
    "4 request rejected, 5 Workers AI failed or unreachable, 6 timeout, 7 rate limited or out of quota, "
    "10 flagged by `cfai moderate`, 130 interrupted."
)


class CfaiError(Exception):
    """Base of every error cfai raises on purpose."""

    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = None
    exit_code: ClassVar[ExitCode] = ExitCode.ERROR

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        upstream_code: int | str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.upstream_code = upstream_code
        self.retry_after = retry_after
        self.headers: dict[str, str] = {}  # extra response headers (e.g. x-ratelimit-*)

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI error body: all four keys always present."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }

    @property
    def anthropic_status(self) -> int:
        """The HTTP status an Anthropic route answers with: the same as `status`, except that capacity
        errors are Anthropic's 529 `overloaded_error` (its SDKs retry those; clients show "overloaded")."""
        return 529 if self.anthropic_type == "overloaded_error" else self.status

    @property
    def anthropic_type(self) -> str:
        """Anthropic's error type for this error, from its class and status (Anthropic's "Errors" page)."""
        if isinstance(self, Overloaded) or (
                isinstance(self, RateLimited) and str(self.upstream_code) in CAPACITY_UPSTREAM_CODES):
            return "overloaded_error"
        return _ANTHROPIC_TYPES.get(self.status, "api_error" if self.status >= 500 else "invalid_request_error")

    def to_anthropic(self) -> dict[str, Any]:
        """The Anthropic error body: `{"type": "error", "error": {"type", "message"}}`."""
        return {"type": "error", "error": {"type": self.anthropic_type, "message": self.message}}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


# Workers AI's "Capacity temporarily exceeded" (core.workers.envelope.CAPACITY_CODES; repeated here because
# this module sits beneath core): a 429 at Cloudflare, an overload in Anthropic's terms; and an Anthropic
# upstream's own 529 `overloaded_error` (upstream.http_api). Both are the "capacity" failover kind.
CAPACITY_UPSTREAM_CODES = frozenset({"3040", "overloaded_error"})

# Statuses without an entry: 4xx -> invalid_request_error (405, 408, 415 are malformed requests to Anthropic
# too), 5xx -> api_error. 413 is "request_too_large" as Anthropic documents it, although the 2.15 SDK's
# ErrorType does not list it (its clients pick the exception class from the status, not the type).
_ANTHROPIC_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
}


class InvalidRequest(CfaiError):
    status = 400
    error_type = "invalid_request_error"
    exit_code = ExitCode.INVALID_REQUEST


class RequestTooLarge(InvalidRequest):
    status = 413
    default_code = "request_too_large"


class UnsupportedMediaType(InvalidRequest):
    status = 415
    default_code = "unsupported_media_type"


class RequestTimeout(InvalidRequest):
    status = 408
    default_code = "request_timeout"


class NotFound(InvalidRequest):
    status = 404
    default_code = "not_found"


class ModelNotFound(NotFound):
    default_code = "model_not_found"


class MethodNotAllowed(InvalidRequest):
    status = 405
    default_code = "method_not_allowed"


class Conflict(InvalidRequest):
    """The request is well formed but the state forbids it (revoking the last admin key, changing a revoked one)."""

    status = 409
    default_code = "conflict"


class AuthenticationError(CfaiError):
    status = 401
    error_type = "invalid_request_error"
    default_code = "invalid_api_key"
    exit_code = ExitCode.CONFIG


class PermissionDenied(CfaiError):
    status = 403
    error_type = "permission_error"
    default_code = "permission_denied"
    exit_code = ExitCode.INVALID_REQUEST


class ConfigError(CfaiError):
    status = 500
    error_type = "server_error"
    default_code = "configuration_error"
    exit_code = ExitCode.CONFIG


class StoreUnavailable(ConfigError):
    """The store's PostgreSQL server cannot be reached (or dropped the connection) while the gateway runs: a
    request that needs keys, usage or stored objects is refused with a 503 to retry, never admitted unchecked."""

    status = 503
    default_code = "store_unavailable"


class Overloaded(CfaiError):
    status = 503
    error_type = "server_error"
    default_code = "overloaded"
    exit_code = ExitCode.UPSTREAM


class BlobsUnavailable(CfaiError):
    """The `[blobs]` store (S3, R2) cannot be reached or refused: a stored image cannot be kept or read now."""

    status = 503
    error_type = "server_error"
    default_code = "blob_storage_unavailable"
    exit_code = ExitCode.UPSTREAM


class CoordinationUnavailable(CfaiError):
    """The shared store of a gateway's rate limits and budgets (`[coordination] url`) cannot be reached, and its
    setting says to refuse requests rather than admit them unchecked (`on_failure = "closed"`)."""

    status = 503
    error_type = "server_error"
    default_code = "coordination_unavailable"
    exit_code = ExitCode.UPSTREAM


class ToolCallFailed(CfaiError):
    """The request forced a tool call and the model answered without one, even when asked again.

    Not an UpstreamError on purpose: the upstream worked, so the router must neither rest it nor fail over.
    """

    status = 502
    error_type = "api_error"
    default_code = "tool_call_failed"
    exit_code = ExitCode.UPSTREAM


class UpstreamError(CfaiError):
    status = 502
    error_type = "api_error"
    default_code = "upstream_error"
    exit_code = ExitCode.UPSTREAM


class UpstreamAuthError(UpstreamError):
    default_code = "upstream_auth_error"
    exit_code = ExitCode.CONFIG


class UpstreamUnanswered(UpstreamError):
    """The connection broke after the request was sent and before any answer: Workers AI may have received
    it (and billed it), so it is never sent to that upstream again (another target may still be tried)."""

    default_code = "upstream_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    default_code = "timeout"
    exit_code = ExitCode.TIMEOUT


class UpstreamStreamError(UpstreamError):
    default_code = "stream_error"


class UpstreamAnswerTooLarge(UpstreamError):
    """An upstream answer beyond what cfai holds in memory (upstream.whole, core.sse): never retried, as the
    same request would bring the same answer."""

    default_code = "upstream_answer_too_large"


class RateLimited(UpstreamError):
    status = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"
    exit_code = ExitCode.RATE_LIMITED


class QuotaExceeded(RateLimited):
    error_type = "insufficient_quota"
    default_code = "insufficient_quota"
