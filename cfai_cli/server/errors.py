"""The proxy's one error boundary: every failure leaves as an error body, never HTML or a traceback.

Imports starlette, core and errors. Handlers cover cfai errors, Starlette's own 404/405, and anything
unexpected (logged server-side without locals, answered as a generic 500). Every configured secret is
masked in error messages (the app's `scrubber`) and in every log record that reaches a handler.
The body's dialect is chosen here alone (`speaks_anthropic`): Anthropic's `{"type": "error", ...}` with its
statuses for the Messages API paths and for any request carrying `anthropic-version` (what every Anthropic
SDK and Claude Code send), OpenAI's `{"error": {...}}` for everything else. Middleware that refuses a
request early (auth, limits, caps) calls `error_response` with the request's scope, so it answers the same way.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from cfai_cli.core.redact import Scrubber
from cfai_cli.errors import CfaiError, MethodNotAllowed, NotFound
from cfai_cli.server.responses import API_HEADERS, JSONResponse

log = logging.getLogger("cfai.server")


ANTHROPIC_PATHS = ("/v1/messages", "/messages")


def speaks_anthropic(scope: Scope) -> bool:
    """True for a request in the Anthropic dialect: a Messages API path (also an unknown one below it), or
    any request with an `anthropic-version` header (the Anthropic SDKs send it on every call)."""
    path: str = scope.get("path", "")
    if any(path == p or path.startswith(p + "/") for p in ANTHROPIC_PATHS):
        return True
    return any(name == b"anthropic-version" for name, _ in scope.get("headers", ()))


def error_response(exc: CfaiError, scope: Scope | None = None) -> JSONResponse:
    """The error answer for `exc`, in the dialect of the request `scope` (OpenAI's without one)."""
    headers = {**API_HEADERS, **exc.headers}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="cfai"'
    if scope is not None and speaks_anthropic(scope):
        return JSONResponse(exc.to_anthropic(), status_code=exc.anthropic_status, headers=headers)
    return JSONResponse(exc.to_openai(), status_code=exc.status, headers=headers)


async def cfai_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CfaiError)
    scrubber: Scrubber | None = getattr(request.app.state, "scrubber", None)
    if scrubber:
        exc.message = scrubber.text(exc.message)
    return error_response(exc, request.scope)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        error: CfaiError = NotFound(f"Unknown request URL: {request.method} {request.url.path}. "
                                   "See the README for the routes cfai serves.")
    elif exc.status_code == 405:
        error = MethodNotAllowed(f"Method {request.method} is not allowed on {request.url.path}.")
    else:
        error = CfaiError(exc.detail or "HTTP error")
        error.status = exc.status_code  # type: ignore[misc]
    response = error_response(error, request.scope)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.error("internal error on %s %s: %s", request.method, request.url.path, type(exc).__name__,
              exc_info=(type(exc), exc, exc.__traceback__))
    error = CfaiError("The proxy hit an internal error; see its log.", code="internal_error")
    if speaks_anthropic(request.scope):
        return JSONResponse(error.to_anthropic(), status_code=500, headers=API_HEADERS)
    body: dict[str, Any] = {"error": {"message": error.message, "type": "server_error", "param": None,
                                      "code": "internal_error"}}
    return JSONResponse(body, status_code=500, headers=API_HEADERS)


HANDLERS = {CfaiError: cfai_error, HTTPException: http_error, Exception: unexpected_error}


class Redact(logging.Filter):
    """Masks secrets in a log record's message and traceback before a handler writes it."""

    def __init__(self, scrubber: Scrubber) -> None:
        super().__init__()
        self.scrubber = scrubber

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self.scrubber.secrets
        if not secrets:
            return True
        message = record.getMessage()
        if record.exc_info or record.stack_info:
            # A traceback may quote a secret too: it becomes part of the (masked) message.
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            if record.stack_info:
                message += "\n" + record.stack_info
            record.exc_info = record.stack_info = None
        elif not any(secret in message for secret in secrets):
            # Nothing to hide: the record stays as made (uvicorn's access formatter needs its args tuple).
            return True
        record.msg, record.args, record.exc_text = self.scrubber.text(message), (), None
        return True


# One filter for the process; its secrets only ever grow (two apps in one process both stay masked).
_REDACT = Redact(Scrubber())
_NAMED = ("cfai", "cfai.server", "cfai.router", "uvicorn", "uvicorn.error", "uvicorn.access")


def _handlers() -> list[logging.Handler]:
    found = list(logging.getLogger().handlers)
    if logging.lastResort is not None:
        found.append(logging.lastResort)  # where records go when nobody configured logging
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            found += logger.handlers
    return found


def install_redaction(scrubber: Scrubber) -> None:
    """Mask `scrubber`'s secrets in every log line: on every handler there is now (the root logger's,
    uvicorn's, Python's last resort), so records of any logger are covered wherever they propagate, and
    on the named loggers too, for handlers added to them later. Called at app creation and again at
    start-up, after uvicorn has configured its logging."""
    _REDACT.scrubber = _REDACT.scrubber.merged(scrubber)
    for handler in _handlers():
        if _REDACT not in handler.filters:
            handler.addFilter(_REDACT)
    for name in _NAMED:
        logger = logging.getLogger(name)
        if _REDACT not in logger.filters:
            logger.addFilter(_REDACT)
