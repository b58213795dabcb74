"""Reading multipart/form-data uploads (image edits, audio) within the proxy's body limit.

Imports starlette and errors. The body is read with the size cap first, then parsed by Starlette's
multipart parser (python-multipart), so an oversized upload is a 413 before any parsing happens. The parsed
form is a context: its uploads are spooled temporary files, closed when the route is done with them.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager

from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from cfai_cli.errors import InvalidRequest, RequestTooLarge, UnsupportedMediaType
from cfai_cli.server.routes.common import media_type, read_body


@asynccontextmanager
async def read_form(request: Request, *, max_files: int = 4, max_fields: int = 64,
                    stream_limit: int | None = None) -> AsyncIterator[FormData]:
    """The parsed form. With `stream_limit` (large uploads: /v1/files) the body is not read whole first: it is
    fed to the parser as it arrives, counted (413 past the limit), and the parser spools files to disk."""
    kind, params = media_type(request.headers.get("content-type"))
    if kind != "multipart/form-data":
        shown = repr(kind[:80]) if kind else "a body without a Content-Type"
        raise UnsupportedMediaType(f"This endpoint takes multipart/form-data (a file upload), not {shown}. With "
                                   "curl, send every field with -F (e.g. -F file=@speech.mp3 -F model=whisper-1).")
    if not params.get("boundary"):
        raise InvalidRequest("The multipart/form-data Content-Type has no boundary parameter.",
                             code="invalid_multipart")
    if stream_limit is not None:
        source = _capped(request, stream_limit)
    else:
        body = await read_body(request, request.app.state.max_body_bytes)

        async def whole() -> AsyncGenerator[bytes, None]:
            yield body

        source = whole()
    parser = MultiPartParser(request.headers, source, max_files=max_files, max_fields=max_fields,
                             max_part_size=1024 * 1024)
    try:
        form = await parser.parse()  # on failure the parser closes the files it opened
    except MultiPartException as exc:
        raise InvalidRequest(f"The multipart body could not be read: {exc.message}.",
                             code="invalid_multipart") from None
    try:
        yield form
    finally:
        await form.close()


async def _capped(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"The request body is larger than the proxy's limit of {limit} bytes.")
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise RequestTooLarge(f"The request body is larger than the proxy's limit of {limit} bytes.")
        yield chunk


async def form_file(form: FormData, name: str, *, required: bool) -> bytes | None:
    """The bytes of upload `name` (also accepted as `name[]`, as some clients send it)."""
    value = form.get(name) or form.get(f"{name}[]")
    if value is None:
        if required:
            raise InvalidRequest(f"Missing required file: '{name}'.", param=name, code="missing_required_parameter")
        return None
    if not isinstance(value, UploadFile):
        raise InvalidRequest(f"'{name}' must be a file upload.", param=name, code="invalid_value")
    data = await value.read()
    if not data:
        raise InvalidRequest(f"The uploaded '{name}' is empty.", param=name, code="invalid_value")
    return data


def form_fields(form: FormData, *, numbers: dict[str, type] | None = None) -> dict[str, object]:
    """The text fields of a form as request-model input, with numeric fields converted (or a 400 naming them)."""
    out: dict[str, object] = {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            continue
        kind = (numbers or {}).get(key)
        if kind is not None:
            try:
                out[key] = kind(value)
            except ValueError:
                raise InvalidRequest(f"Invalid value for '{key}': {value!r} is not a {kind.__name__}.", param=key,
                                     code="invalid_value") from None
        else:
            out[key] = value
    return out
