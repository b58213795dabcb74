"""The admin API under /v1/admin (cfai's own, not OpenAI's): keys and usage summaries over HTTP (docs/admin.md).

Imports starlette, service, core and errors. Every route needs a key with the `admin` scope (server/auth.py) and
runs the very service functions `cfai keygen|keys|usage` run (service.admin), in a worker thread (SQLite).
A key's secret appears only in the answers of create and rotate; the request log and metrics see these
requests like any other (route `admin/keys` or `admin/usage`, never a body).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from starlette.requests import Request
from starlette.responses import Response

from cfai_cli.core.admin import KeyCreate, KeyUpdate, refuse_unknown
from cfai_cli.core.openai.base import validate_request
from cfai_cli.errors import InvalidRequest
from cfai_cli.server.responses import API_HEADERS, JSONResponse
from cfai_cli.server.routes.common import read_json
from cfai_cli.service import admin
from cfai_cli.store.keys import KeyStore
from cfai_cli.store.usage import UsageLog
from cfai_cli.store.usage_query import MAX_SERIES

T = TypeVar("T")


async def _run(call: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(call)


def _store(request: Request) -> KeyStore:
    return KeyStore(request.app.state.ctx.settings.storage)


def _keep_admin(request: Request) -> bool:
    """Guard the last admin key only while keys are required: without auth (loopback) nobody is locked out."""
    return bool(request.app.state.keys_required)


def _answer(body: dict[str, Any], status: int = 200) -> Response:
    return JSONResponse(body, status_code=status, headers=API_HEADERS)


def _int_query(request: Request, name: str, default: int, maximum: int = admin.MAX_PAGE) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise InvalidRequest(f"Invalid value for '{name}': expected an integer from 1 to {maximum}.",
                             param=name, code="invalid_value")
    return int(raw)


async def create_key(request: Request) -> Response:
    data = await read_json(request)
    refuse_unknown(KeyCreate, data)
    body = validate_request(KeyCreate, data)
    policy = admin.policy_of(body, now=time.time())
    key, record = await _run(lambda: admin.create_key(_store(request), body.name, policy))
    return _answer({**admin.key_view(record), "key": key}, status=201)


async def list_keys(request: Request) -> Response:
    limit = _int_query(request, "limit", admin.DEFAULT_PAGE)
    after = request.query_params.get("after")
    await request.app.state.recorder.flush()  # last_used_at counts the requests of the last second too
    log = UsageLog(request.app.state.ctx.settings.storage)

    def page() -> dict[str, Any]:
        listed = admin.list_keys(_store(request), limit=limit, after=after)
        return {**listed, "data": admin.last_used(log, listed["data"])}

    return _answer(await _run(page))


async def show_key(request: Request) -> Response:
    key_id = request.path_params["key_id"]
    return _answer(admin.key_view(await _run(lambda: admin.get_key(_store(request), key_id))))


async def update_key(request: Request) -> Response:
    key_id = request.path_params["key_id"]
    data = await read_json(request)
    refuse_unknown(KeyUpdate, data)
    body = validate_request(KeyUpdate, data)
    record = await _run(lambda: admin.update_key(_store(request), key_id, body, keep_admin=_keep_admin(request)))
    return _answer(admin.key_view(record))


async def rotate_key(request: Request) -> Response:
    key_id = request.path_params["key_id"]
    key, record = await _run(lambda: admin.rotate_key(_store(request), key_id))
    return _answer({**admin.key_view(record), "key": key, "rotated_from": key_id})


async def revoke_key(request: Request) -> Response:
    key_id = request.path_params["key_id"]
    record = await _run(lambda: admin.revoke_key(_store(request), key_id, keep_admin=_keep_admin(request)))
    return _answer({**admin.key_view(record), "deleted": True})


async def usage(request: Request) -> Response:
    since = request.query_params.get("since", "7d")
    by = request.query_params.get("by", "model")
    limit = _int_query(request, "limit", admin.MAX_PAGE)
    await request.app.state.recorder.flush()  # the requests of the last second count too
    log = UsageLog(request.app.state.ctx.settings.storage)
    rows = await _run(lambda: admin.usage_summary(log, since=since, by=by))
    accounts = await _run(lambda: admin.usage_accounts(log))
    return _answer(admin.usage_view(rows, since=since, by=by, limit=limit, accounts=accounts))


async def usage_series(request: Request) -> Response:
    """The usage view's chart: a time series per model or key, aggregated in SQL (service.admin.usage_series)."""
    query = request.query_params
    top = _int_query(request, "top", admin.DEFAULT_SERIES, maximum=MAX_SERIES)
    await request.app.state.recorder.flush()
    log = UsageLog(request.app.state.ctx.settings.storage)
    return _answer(await _run(lambda: admin.usage_series(
        log, _store(request), since=query.get("since", "24h"), by=query.get("by", "model"),
        bucket=query.get("bucket", "auto"), top=top)))


ROUTES = [
    ("/admin/keys", create_key, ["POST"]),
    ("/admin/keys", list_keys, ["GET"]),
    ("/admin/keys/{key_id}", show_key, ["GET"]),
    ("/admin/keys/{key_id}", update_key, ["PATCH"]),
    ("/admin/keys/{key_id}", revoke_key, ["DELETE"]),
    ("/admin/keys/{key_id}/rotate", rotate_key, ["POST"]),
    ("/admin/usage", usage, ["GET"]),
    ("/admin/usage/series", usage_series, ["GET"]),
]
