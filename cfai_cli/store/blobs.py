"""Where stored bytes live: a `BlobStore` of named objects, on the data directory's disk or on S3 (store.blobs_s3).

Imports stdlib, anyio, core, errors. A store knows nothing of owners or expiry: those stay in the database rows
(store.images, store.files), which are the index — a key is only ever one the index produced, never user input.
Disk blobs are 0600 files in a 0700 directory, written with O_EXCL (an id is never reused); disk work runs in a
thread so a large file never stalls the event loop. Failures of the store itself are `BlobsUnavailable` (503).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio

from cfai_cli.core.blobs import BlobsConfig
from cfai_cli.errors import BlobsUnavailable

CHUNK = 256 * 1024
_READ = 1024 * 1024  # a disk file is read a MB at a time: one thread hop each
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Blob:
    """An object found: a local file to send as it is (disk), or chunks to stream (S3)."""

    size: int
    path: Path | None = None
    chunks: AsyncIterator[bytes] | None = None


class BlobStore(Protocol):
    async def put(self, key: str, data: bytes | Path, *, content_type: str, move: bool = False) -> None:
        """Store `data` (bytes, or a local file streamed from disk) under a new key. `move`: the file is the
        caller's scratch copy, which a disk store may rename into place instead of copying (same filesystem)."""
        ...

    async def get(self, key: str) -> Blob | None:
        """The object, or None when there is none."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; one already gone is no error."""
        ...

    async def exists(self, key: str) -> bool:
        ...


class DiskBlobs:
    """Files in one directory, named by their keys (the layout single-host installs already have)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, key: str) -> Path:
        if "/" in key or key in ("", ".", ".."):  # keys come from the index; this only guards a bug
            raise ValueError(f"not a blob key: {key!r}")
        return self.directory / key

    def _put(self, key: str, data: bytes | Path, move: bool) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if move and isinstance(data, Path):  # an upload written to the directory's scratch file: no second copy
            os.replace(data, self._path(key))
            return
        fd = os.open(self._path(key), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, Path):
                with data.open("rb") as src:
                    while chunk := src.read(CHUNK):
                        fh.write(chunk)
            else:
                fh.write(data)

    async def put(self, key: str, data: bytes | Path, *, content_type: str, move: bool = False) -> None:
        try:
            await anyio.to_thread.run_sync(self._put, key, data, move)
        except OSError as exc:
            raise BlobsUnavailable(f"cannot write to {self.directory}: {exc.strerror or exc}") from None

    async def get(self, key: str) -> Blob | None:
        path = self._path(key)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return None
        return Blob(size, path=path)

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    async def exists(self, key: str) -> bool:
        return self._path(key).is_file()


async def chunks_of(blob: Blob) -> AsyncIterator[bytes]:
    """A found object's bytes, a chunk at a time (a disk file is read in a thread: never on the event loop)."""
    if blob.chunks is not None:
        async for chunk in blob.chunks:
            yield chunk
        return
    assert blob.path is not None
    with blob.path.open("rb") as source:
        while chunk := await anyio.to_thread.run_sync(source.read, _READ):
            yield chunk


@contextlib.asynccontextmanager
async def local_file(blob: Blob, directory: Path) -> AsyncIterator[Path]:
    """A local file with the object's bytes, for code that reads it line by line: a disk blob's own file, or a
    private (0600) temporary copy in `directory` streamed from the store and removed afterwards."""
    if blob.path is not None:
        yield blob.path
        return
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(dir=directory, prefix=".", suffix=".get")
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in chunks_of(blob):
                await anyio.to_thread.run_sync(out.write, chunk)
        yield Path(name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def blocking(call: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run blob calls from synchronous code off the event loop (the CLI, a retention pass in a worker thread):
    on a short-lived loop of this thread (obstore's clients work from any loop)."""
    return asyncio.run(call())


def delete_blocking(store: BlobStore, keys: list[str]) -> None:
    """Delete objects from synchronous code; on disk without any loop (the single host's retention pass)."""
    if isinstance(store, DiskBlobs):
        for key in keys:
            store._path(key).unlink(missing_ok=True)
        return

    async def delete_all() -> None:
        for key in keys:
            await store.delete(key)

    blocking(delete_all)


def open_blobs(config: BlobsConfig, directory: Path, namespace: str) -> BlobStore:
    """The store for one kind of object (`images`, `files`): `directory` on disk, or `<prefix>/<namespace>/` in the
    [blobs] bucket."""
    if config.url is None:
        return DiskBlobs(directory)
    from cfai_cli.store.blobs_s3 import s3_blobs  # obstore only when an s3:// url is configured

    return s3_blobs(config, namespace)
