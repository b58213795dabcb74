"""`[blobs] url = "s3://bucket/prefix"`: a BlobStore on any S3-compatible store (AWS, Cloudflare R2, MinIO) over
obstore (Rust's object_store: async, streaming, multipart uploads).

Imported only when an s3:// url is configured, so a single-host install never loads obstore. Credentials come
from the standard AWS_* environment variables (obstore reads them: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_SESSION_TOKEN, AWS_REGION, AWS_ENDPOINT_URL), never from config.toml; `endpoint` and `region` in `[blobs]`
take precedence. Timeouts are short and retries few: an unreachable store must give a prompt 503, not hang a
request for a minute. Every failure but "no such object" is `BlobsUnavailable`, with no credentials in it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import obstore
from obstore.exceptions import NotFoundError
from obstore.store import S3Store

from cfai_cli.core.blobs import BlobsConfig, parse_s3_url
from cfai_cli.errors import BlobsUnavailable
from cfai_cli.store.blobs import CHUNK, Blob, BlobStore

if TYPE_CHECKING:
    from obstore import BytesStream
    from obstore.store import ClientConfig, S3Config

_MULTIPART = 8 * 1024 * 1024  # larger uploads go in parts, read from disk as they are sent
_PARTS_IN_FLIGHT = 4  # parts sent at once: an upload holds at most 4 x 8 MB in memory, whatever its size


class S3Blobs:
    def __init__(self, store: S3Store, where: str) -> None:
        self.store = store
        self.where = where  # s3://bucket/prefix, for error messages

    def _failed(self, action: str, exc: Exception) -> BlobsUnavailable:
        # obstore's messages carry the endpoint and the S3 error, never the secret key
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return BlobsUnavailable(f"blob storage at {self.where} is unavailable ({action}): {first[:300]}")

    async def probe(self) -> None:
        """The bucket answers a listing of at most one object (`cfai doctor`): a HEAD cannot tell a missing
        bucket from a missing object."""
        try:
            async for _ in obstore.list(self.store, chunk_size=1):
                break
        except Exception as exc:
            raise self._failed("list", exc) from None

    async def put(self, key: str, data: bytes | Path, *, content_type: str, move: bool = False) -> None:
        try:  # `move` changes nothing here: the caller removes its scratch file once the object is stored
            await obstore.put_async(self.store, key, data, attributes={"Content-Type": content_type},
                                    chunk_size=_MULTIPART, max_concurrency=_PARTS_IN_FLIGHT)
        except Exception as exc:
            raise self._failed("put", exc) from None

    async def get(self, key: str) -> Blob | None:
        try:
            result = await obstore.get_async(self.store, key)
        except (NotFoundError, FileNotFoundError):  # obstore raises the builtin for some 404s (HEAD)
            return None
        except Exception as exc:
            raise self._failed("get", exc) from None
        return Blob(result.meta["size"], chunks=self._chunks(result.stream(min_chunk_size=CHUNK)))

    async def _chunks(self, stream: BytesStream) -> AsyncIterator[bytes]:
        try:
            async for chunk in stream:
                yield chunk
        except Exception as exc:  # the store went away mid-read
            raise self._failed("get", exc) from None

    async def delete(self, key: str) -> None:
        try:
            await obstore.delete_async(self.store, key)  # S3 answers 204 for a missing key too
        except (NotFoundError, FileNotFoundError):  # obstore raises the builtin for some 404s (HEAD)
            return
        except Exception as exc:
            raise self._failed("delete", exc) from None

    async def exists(self, key: str) -> bool:
        try:
            await obstore.head_async(self.store, key)
        except (NotFoundError, FileNotFoundError):  # obstore raises the builtin for some 404s (HEAD)
            return False
        except Exception as exc:
            raise self._failed("head", exc) from None
        return True


@cache  # one client (and its connection pool) per configuration and kind of object, for the process's life
def s3_blobs(config: BlobsConfig, namespace: str) -> BlobStore:
    assert config.url is not None
    bucket, prefix = parse_s3_url(config.url)
    options: S3Config = {}
    if config.endpoint:
        options["endpoint"] = config.endpoint
    if config.region:
        options["region"] = config.region
    client: ClientConfig = {"connect_timeout": timedelta(seconds=3), "timeout": timedelta(seconds=60)}
    # Our client options replace obstore's reading of AWS_ALLOW_HTTP, so plain HTTP is allowed here for an http://
    # endpoint from [blobs] or AWS_ENDPOINT_URL (a MinIO beside the replicas, the tests' moto) or AWS_ALLOW_HTTP=true.
    endpoint = config.endpoint or os.environ.get("AWS_ENDPOINT_URL", "")
    if endpoint.startswith("http://") or os.environ.get("AWS_ALLOW_HTTP", "").lower() in ("1", "true", "yes"):
        client["allow_http"] = True
    store = S3Store(bucket, prefix="/".join(p for p in (prefix, namespace) if p), config=options,
                    client_options=client,
                    retry_config={"max_retries": 2, "backoff": {"init_backoff": timedelta(milliseconds=100),
                                                                 "max_backoff": timedelta(seconds=1), "base": 2},
                                  "retry_timeout": timedelta(seconds=5)})
    return S3Blobs(store, config.url)
