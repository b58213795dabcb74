"""The request's record in its ASGI scope, shared by the middleware (server.auth, server.observe) and the routes.

Imports starlette's types and service.record only: the middleware is built before `cfai serve` answers its first
/health, and the routes' helpers (server.routes.common) bring the chat models, the SSE stream and the service
context (~60 M instructions, issue 25, 2026-12-02) that the first request of a route loads instead.
"""

from __future__ import annotations

from typing import cast

from starlette.types import Scope

from cfai_cli.service.record import RequestRecord


def request_record(scope: Scope) -> RequestRecord:
    """This request's record, made by the first middleware that needs it (see service.record)."""
    state = scope.setdefault("state", {})
    record = state.get("cfai_record")
    if record is None:
        record = state["cfai_record"] = RequestRecord()
    return cast(RequestRecord, record)
