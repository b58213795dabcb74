"""The Files API: POST /v1/files (multipart upload), GET /v1/files, GET/DELETE /v1/files/{id}, GET .../content.

Imports starlette, service, core and errors. The upload is streamed through the multipart parser (server.forms,
413 past `max_file_mb`) into a spooled temporary file, then copied to the files directory by service.files (and on
to the `[blobs]` bucket when one is set); content is streamed back from wherever it is. Files belong to the key
that uploaded them (server.routes.responses.owner).
"""

from __future__ import annotations

import anyio
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from cfai_cli.errors import InvalidRequest
from cfai_cli.server.forms import read_form
from cfai_cli.server.responses import API_HEADERS, JSONResponse
from cfai_cli.server.routes.responses import owner
from cfai_cli.service.files import (
    delete_file,
    describe,
    expires_after,
    get_file,
    list_files,
    max_file_bytes,
    read_chunks,
    upload_file,
)

_MULTIPART_OVERHEAD = 64 * 1024  # boundaries, part headers and the purpose field around the file


def _int(raw: str | None, name: str, default: int) -> int:
    if raw is None:
        return default
    if not raw.isdigit():
        raise InvalidRequest(f"Invalid value for '{name}': expected a positive integer.", param=name,
                             code="invalid_value")
    return int(raw)


async def create(request: Request) -> Response:
    ctx = request.app.state.ctx
    async with read_form(request, max_files=1, max_fields=8,
                         stream_limit=max_file_bytes(ctx) + _MULTIPART_OVERHEAD) as form:
        purpose = form.get("purpose")
        if not isinstance(purpose, str) or not purpose:
            raise InvalidRequest("Missing required parameter: 'purpose' ('batch' or 'user_data').", param="purpose",
                                 code="missing_required_parameter")
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("Missing required parameter: 'file' (a multipart file upload).", param="file",
                                 code="missing_required_parameter")
        expires = expires_after(form.get("expires_after[anchor]"), form.get("expires_after[seconds]"))
        await upload.seek(0)
        found = await upload_file(ctx, upload.file, owner=owner(request), purpose=purpose.strip(),
                                  filename=upload.filename or "upload.jsonl", expires=expires)
    return JSONResponse(found, headers=API_HEADERS)


async def listing(request: Request) -> Response:
    query = request.query_params
    limit = _int(query.get("limit"), "limit", 10000)
    # A worker thread, as every store call from the event loop: on PostgreSQL it is a round trip (or a wait
    # for a pooled connection), which must not stall the other requests.
    page = await anyio.to_thread.run_sync(lambda: list_files(
        request.app.state.ctx, owner=owner(request), purpose=query.get("purpose"), limit=limit,
        after=query.get("after"), order=query.get("order", "desc")))
    return JSONResponse(page, headers=API_HEADERS)


async def retrieve(request: Request) -> Response:
    found = await anyio.to_thread.run_sync(
        lambda: get_file(request.app.state.ctx, request.path_params["file_id"], owner=owner(request)))
    return JSONResponse(describe(found), headers=API_HEADERS)


async def content(request: Request) -> Response:
    ctx = request.app.state.ctx
    found = await anyio.to_thread.run_sync(lambda: get_file(ctx, request.path_params["file_id"], owner=owner(request)))
    return StreamingResponse(await read_chunks(ctx, found), media_type="application/octet-stream",
                             headers={**API_HEADERS, "content-length": str(found.bytes)})


async def delete(request: Request) -> Response:
    return JSONResponse(await delete_file(request.app.state.ctx, request.path_params["file_id"], owner=owner(request)),
                        headers=API_HEADERS)


ROUTES = [
    ("/files", create, ["POST"]),
    ("/files", listing, ["GET"]),
    ("/files/{file_id}", retrieve, ["GET"]),
    ("/files/{file_id}", delete, ["DELETE"]),
    ("/files/{file_id}/content", content, ["GET"]),
]
