"""Where stored bytes live: a `BlobStore` of named objects, on the data directory's disk or on S3 (store.blobs_s3).

Imports stdlib, anyio, core, errors. A store knows nothing of owners or expiry: those stay in the database rows
(store.images), which are the index — a key is only ever one the index produced, never user input. Disk blobs
are 0600 files in a 0700 directory, written with O_EXCL (an id is never reused); disk work runs in a thread so
a large file never stalls the event loop. Failures of the store itself are `BlobsUnavailable` (503).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import anyio

from cfai_cli.core.blobs import BlobsConfig
from cfai_cli.errors import BlobsUnavailable

CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class Blob:
    """An object found: a local file to send as it is (disk), or chunks to stream (S3)."""

    size: int
    path: Path | None = None
    chunks: AsyncIterator[bytes] | None = None


class BlobStore(Protocol):
    async def put(self, key: str, data: bytes | Path, *, content_type: str) -> None:
        """Store `data` (bytes, or a local file streamed from disk) under a new key."""
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

    def _put(self, key: str, data: bytes | Path) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self._path(key), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, Path):
                with data.open("rb") as src:
                    while chunk := src.read(CHUNK):
                        fh.write(chunk)
            else:
                fh.write(data)

    async def put(self, key: str, data: bytes | Path, *, content_type: str) -> None:
        try:
            await anyio.to_thread.run_sync(self._put, key, data)
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


def open_blobs(config: BlobsConfig, directory: Path, namespace: str) -> BlobStore:
    """The store for one kind of object: `directory` on disk, or `<prefix>/<namespace>/` in the [blobs] bucket."""
    if config.url is None:
        return DiskBlobs(directory)
    from cfai_cli.store.blobs_s3 import s3_blobs  # obstore only when an s3:// url is configured

    return s3_blobs(config, namespace)
