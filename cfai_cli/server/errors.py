"""The proxy's one error boundary: every failure leaves as an OpenAI error body, never HTML or a traceback.

Imports starlette and errors. Handlers cover cfai errors, Starlette's own 404/405, and anything
unexpected (logged server-side without locals, answered as a generic 500).
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from cfai_cli.errors import CfaiError, MethodNotAllowed, NotFound
from cfai_cli.server.responses import JSONResponse

log = logging.getLogger("cfai.server")

API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def error_response(exc: CfaiError) -> JSONResponse:
    headers = {**API_HEADERS, **exc.headers}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="cfai"'
    return JSONResponse(exc.to_openai(), status_code=exc.status, headers=headers)


async def cfai_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CfaiError)
    return error_response(exc)


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
    response = error_response(error)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.error("internal error on %s %s: %s", request.method, request.url.path, type(exc).__name__,
              exc_info=(type(exc), exc, exc.__traceback__))
    body: dict[str, Any] = {"error": {"message": "The proxy hit an internal error; see its log.",
                                      "type": "server_error", "param": None, "code": "internal_error"}}
    return JSONResponse(body, status_code=500, headers=API_HEADERS)


HANDLERS = {CfaiError: cfai_error, HTTPException: http_error, Exception: unexpected_error}


class Redact(logging.Filter):
    """Masks secrets (the Cloudflare token) in log messages and tracebacks before any handler sees them."""

    def __init__(self, *secrets: str | None) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        elif not any(secret in message for secret in self.secrets):
            # Nothing to hide: the record stays as made (uvicorn's access formatter needs its args tuple).
            return True
        for secret in self.secrets:
            message = message.replace(secret, "***")
        record.msg, record.args, record.exc_text = message, (), None
        return True


def install_redaction(*secrets: str | None) -> None:
    redact = Redact(*secrets)
    # Logger filters see only records made on that very logger, so every logger that logs is named.
    for name in ("cfai", "cfai.server", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, Redact)]:
            logger.removeFilter(old)
        logger.addFilter(redact)
