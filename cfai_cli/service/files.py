"""The Files API (`/v1/files`) for the proxy and the CLI: upload, list, show, read and delete a key's files.

Imports anyio, store, core and errors. An upload is copied from its source to a private scratch file in the files
directory (never whole in memory), bounded by `max_file_mb`; a `batch` file is then read back line by line and
checked as a batch input file (core.openai.batches: each error names its line), and only a good file is given its
id: renamed into place on disk, or streamed to the `[blobs]` bucket (store.blobs) in parts. Every lookup is by id
and owner: another key's file is a 404, the same as a file that never existed, so ids cannot be probed.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any

import anyio

from cfai_cli.core.openai.batches import FILE_PURPOSES, LineChecker, LineError, file_object
from cfai_cli.errors import InvalidRequest, NotFound, RequestTooLarge
from cfai_cli.service.context import Context
from cfai_cli.store.blobs import chunks_of, open_blobs
from cfai_cli.store.files import FileQuotaExceeded, FileStore, StoredFile

Json = dict[str, Any]
_CHUNK = 1024 * 1024


def file_store(ctx: Context) -> FileStore:
    s = ctx.settings
    return FileStore(s.storage, s.files_dir, open_blobs(s.blobs, s.files_dir, "files"))


def max_file_bytes(ctx: Context) -> int:
    return int(ctx.settings.max_file_mb * 1024 * 1024)


def describe(found: StoredFile) -> Json:
    return file_object(file_id=found.id, size=found.bytes, created_at=found.created_at, filename=found.filename,
                       purpose=found.purpose, expires_at=found.expires_at)


def not_found(file_id: str, param: str | None = None) -> NotFound:
    return NotFound(f"No such File object: {file_id[:100]}", param=param, code="file_not_found")


def _copy(source: IO[bytes], fd: int, limit: int) -> int:
    size = 0
    while chunk := source.read(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"The file is larger than the limit of {limit} bytes (setting max_file_mb).",
                                  param="file", code="file_too_large")
        os.write(fd, chunk)
    return size


def check_batch_file(path: Path, max_lines: int) -> int:
    """The number of requests in a batch input file, or a 400 naming the first bad line."""
    checker = LineChecker(max_lines)
    requests = 0
    with path.open("rb") as lines:
        for raw in lines:
            try:
                if checker.add(raw) is not None:
                    requests += 1
            except LineError as exc:
                raise InvalidRequest(f"The batch input file is not valid: {exc}", param="file",
                                     code="invalid_batch_file") from None
    if not requests:
        raise InvalidRequest("The batch input file holds no requests (one JSON object per line).", param="file",
                             code="invalid_batch_file")
    return requests


EXPIRES_AFTER = (3600, 2_592_000)  # OpenAI's bounds for `expires_after.seconds`: an hour to 30 days


def expires_after(anchor: object, seconds: object) -> int | None:
    """The seconds of OpenAI's `expires_after` ({anchor: created_at, seconds}), None when it is not sent; a 400
    naming it when it is malformed."""
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise InvalidRequest("Invalid value for 'expires_after.anchor': expected 'created_at'.",
                             param="expires_after", code="invalid_value")
    low, high = EXPIRES_AFTER
    if not isinstance(seconds, str | int) or not str(seconds).strip().isdigit() or not (
            low <= int(str(seconds).strip()) <= high):
        raise InvalidRequest(f"Invalid value for 'expires_after.seconds': expected an integer from {low} to {high}.",
                             param="expires_after", code="invalid_value")
    return int(str(seconds).strip())


def _receive(ctx: Context, source: IO[bytes], scratch: Path, fd: int, purpose: str) -> tuple[int, int | None]:
    """(bytes, requests of a batch file) of an upload copied to its scratch file and checked there."""
    size = _copy(source, fd, max_file_bytes(ctx))
    if not size:
        raise InvalidRequest("The uploaded file is empty.", param="file", code="invalid_value")
    return size, check_batch_file(scratch, ctx.settings.batch_max_lines) if purpose == "batch" else None


async def _upload(ctx: Context, source: IO[bytes], *, owner: str | None, purpose: str, filename: str,
                  expires: int | None = None) -> StoredFile:
    store = file_store(ctx)
    file_id = ctx.ids("file")
    with store.writer(file_id) as (scratch, fd):
        size, lines = await anyio.to_thread.run_sync(_receive, ctx, source, scratch, fd, purpose)
        now = ctx.now()
        record = StoredFile(file_id, owner, purpose, filename[:255] or "upload", size, now,
                            None if expires is None else now + expires, lines)
        quota = (ctx.settings.max_files_per_key, int(ctx.settings.max_stored_files_mb * 1024 * 1024))
        try:
            return await store.add(record, scratch, quota=quota)
        except FileQuotaExceeded as full:
            raise RequestTooLarge(
                f"This key's files would exceed its storage quota ({full.count} files, {full.held} bytes stored; "
                f"at most {full.quota[0]} files and {full.quota[1]} bytes: settings max_files_per_key and "
                "max_stored_files_mb). Delete files it no longer needs (DELETE /v1/files/{id}).",
                param="file", code="storage_quota_exceeded") from None


async def upload_file(ctx: Context, source: IO[bytes], *, owner: str | None, purpose: str, filename: str,
                      expires: int | None = None) -> Json:
    """Store an upload (`purpose` batch or user_data) for `owner`, deleted `expires` seconds after it is made
    (store.retention; None: kept until deleted); OpenAI's File object."""
    if purpose not in FILE_PURPOSES:
        raise InvalidRequest(f"Invalid value for 'purpose': {purpose[:40]!r}; cfai stores files with purpose "
                             f"{' or '.join(repr(p) for p in FILE_PURPOSES)}.", param="purpose", code="invalid_value")
    return describe(await _upload(ctx, source, owner=owner, purpose=purpose, filename=filename, expires=expires))


def get_file(ctx: Context, file_id: str, *, owner: str | None) -> StoredFile:
    found = file_store(ctx).get(file_id, owner=owner)
    if found is None or (found.expires_at is not None and found.expires_at <= ctx.now()):
        raise not_found(file_id)  # an expired file is gone, even before the retention pass deletes it
    return found


def list_files(ctx: Context, *, owner: str | None, purpose: str | None = None, limit: int = 10000,
               after: str | None = None, order: str = "desc") -> Json:
    if not 1 <= limit <= 10000:
        raise InvalidRequest("Invalid value for 'limit': expected an integer from 1 to 10000.", param="limit",
                             code="invalid_value")
    if order not in ("asc", "desc"):
        raise InvalidRequest("Invalid value for 'order': expected 'asc' or 'desc'.", param="order",
                             code="invalid_value")
    page, more = file_store(ctx).page(owner=owner, purpose=purpose, limit=limit, after=after,
                                      ascending=order == "asc")
    out: Json = {"object": "list", "data": [describe(f) for f in page], "has_more": more}
    if page:
        out["first_id"], out["last_id"] = page[0].id, page[-1].id
    return out


async def read_chunks(ctx: Context, found: StoredFile) -> AsyncIterator[bytes]:
    """A file's bytes as they come from the store (a 503 BlobsUnavailable before the first when it is down)."""
    blob = await file_store(ctx).open(found)
    if blob is None:  # the row outlived its object (removed by hand): as gone as the file
        raise not_found(found.id)
    return chunks_of(blob)


async def file_content(ctx: Context, file_id: str, *, owner: str | None) -> bytes:
    """A whole file's bytes (for tests and small files; the proxy streams them with `read_chunks`)."""
    return b"".join([chunk async for chunk in await read_chunks(ctx, get_file(ctx, file_id, owner=owner))])


async def delete_file(ctx: Context, file_id: str, *, owner: str | None) -> Json:
    if not await file_store(ctx).delete(file_id, owner=owner):
        raise not_found(file_id)
    return {"id": file_id, "object": "file", "deleted": True}


def _write_lines(fd: int, lines: Iterator[str]) -> tuple[int, int]:
    size = count = 0
    for line in lines:
        data = line.encode("utf-8") + b"\n"
        os.write(fd, data)
        size += len(data)
        count += 1
    return size, count


async def write_output_file(ctx: Context, *, owner: str | None, filename: str, lines: Iterator[str]) -> Json | None:
    """A `batch_output` file of JSONL `lines`, owned by the batch's key (the executor's output and error files);
    None when there are no lines (no file). `lines` is read in a worker thread: it may read the database."""
    store = file_store(ctx)
    file_id = ctx.ids("file")
    with store.writer(file_id) as (scratch, fd):
        size, count = await anyio.to_thread.run_sync(_write_lines, fd, lines)
        if not count:
            return None
        record = StoredFile(file_id, owner, "batch_output", filename, size, ctx.now(), None, count)
        return describe(await store.add(record, scratch))
