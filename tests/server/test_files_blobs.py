"""Files and batches with `[blobs] url` set: the bytes of /v1/files uploads and of the batch executor's input,
output and error files live under `files/` in a real S3-compatible bucket (moto, tests/infra), driven through the
real `openai` SDK: the same ids, ownership (another key: 404), quotas, expiry and delete as on disk (where
tests/server/test_batches_sdk.py runs), nothing of them on the local disk, and a store that goes away is a clear
503 OpenAI error, never a 500."""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import anyio
import obstore
import openai
import pytest
from obstore.store import S3Store

from cfai_cli.core.blobs import BlobsConfig
from cfai_cli.settings import Settings
from cfai_cli.store.retention import prune, retention_of
from tests.infra.fixtures import _serve
from tests.infra.servers import S3Server, start_s3
from tests.server.test_batches_sdk import (
    CHAT,
    both_engines,
    chat_line,
    final,
    make_key,
    outputs,
    sdk,
    store_of,
    submit,
    until,
)
from tests.servers import free_port

pytestmark = pytest.mark.anyio
BIG = 9 * 1024 * 1024 + 123  # past one 8 MB part: a multipart upload


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The credentials the way a deployment gives them: the standard AWS_* variables, never config.toml."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_access_key)
    return s3_server


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return replace(settings, store=store_of(request))  # both_engines: metadata in SQLite, then in PostgreSQL


def on_s3(settings: Settings, s3: S3Server) -> Settings:
    """Settings whose blobs are in a fresh bucket of `s3`, under the prefix `gateway`."""
    bucket = s3.create_bucket(f"cfai-{uuid.uuid4().hex[:12]}")
    config = BlobsConfig(url=f"s3://{bucket}/gateway", endpoint=s3.url, region=s3.region)
    return replace(settings, blobs=config, batch_concurrency=1)


def bucket(s3: S3Server, settings: Settings) -> S3Store:
    """An independent client on the bucket (not cfai's), to see what is really there."""
    assert settings.blobs.url
    name = settings.blobs.url.removeprefix("s3://").split("/")[0]
    return S3Store(name, config={"endpoint": s3.url, "region": s3.region, "access_key_id": s3.access_key_id,
                                 "secret_access_key": s3.secret_access_key}, client_options={"allow_http": True})


async def objects(store: S3Store) -> dict[str, int]:
    return {meta["path"]: meta["size"] async for page in obstore.list(store) for meta in page}


def local_files(settings: Settings) -> list[str]:
    return sorted(p.name for p in settings.files_dir.iterdir()) if settings.files_dir.exists() else []


def assert_error(error: openai.APIStatusError, status: int, code: str) -> dict[str, Any]:
    assert error.status_code == status, error.response.text
    body: dict[str, Any] = error.response.json()["error"]
    assert set(body) == {"message", "type", "param", "code"} and body["code"] == code
    return body


@both_engines
async def test_upload_list_read_and_delete_keep_the_bytes_in_the_bucket(s3_env: S3Server,
                                                                        settings: Settings) -> None:
    where = on_s3(settings, s3_env)
    owner, other = make_key(where), make_key(where)
    data = bytes(range(256)) * (BIG // 256) + b"tail"
    async with sdk(where, owner) as client, sdk(where, other) as stranger:
        made = await client.files.create(file=("big.bin", io.BytesIO(data)), purpose="user_data")
        key = f"gateway/files/{made.id}"
        assert (await objects(bucket(s3_env, where))) == {key: len(data)}
        assert local_files(where) == []  # nothing on this host's disk: no scratch file left either
        listed = [f.id async for f in client.files.list()]
        assert listed == [made.id] and made.bytes == len(data) and made.filename == "big.bin"
        assert (await client.files.content(made.id)).content == data
        assert (await client.files.retrieve(made.id)).bytes == len(data)
        assert [f.id async for f in stranger.files.list()] == []
        for call in (stranger.files.retrieve, stranger.files.content, stranger.files.delete):
            with pytest.raises(openai.NotFoundError) as refused:
                await call(made.id)
            assert_error(refused.value, 404, "file_not_found")
        gone = await client.files.delete(made.id)
        assert gone.deleted and gone.id == made.id
        assert await objects(bucket(s3_env, where)) == {}
        with pytest.raises(openai.NotFoundError):
            await client.files.content(made.id)


async def test_a_refused_upload_leaves_no_object(s3_env: S3Server, settings: Settings) -> None:
    where = replace(on_s3(settings, s3_env), max_files_per_key=1)
    key = make_key(where)
    async with sdk(where, key) as client:
        kept = await client.files.create(file=("a.txt", io.BytesIO(b"first")), purpose="user_data")
        with pytest.raises(openai.APIStatusError) as full:
            await client.files.create(file=("b.txt", io.BytesIO(b"second")), purpose="user_data")
        assert_error(full.value, 413, "storage_quota_exceeded")
        with pytest.raises(openai.BadRequestError) as bad:
            await client.files.create(file=("c.jsonl", io.BytesIO(b"not json\n")), purpose="batch")
        assert_error(bad.value, 400, "invalid_batch_file")
    assert await objects(bucket(s3_env, where)) == {f"gateway/files/{kept.id}": 5}
    assert local_files(where) == []


@both_engines
async def test_a_batch_reads_and_writes_its_files_on_the_bucket(s3_env: S3Server, settings: Settings) -> None:
    where = on_s3(settings, s3_env)
    key = make_key(where, models=("gpt-4o-mini",))
    lines = [chat_line("one"), chat_line("two"), chat_line("refused", model="@cf/qwen/qwq-32b")]
    async with sdk(where, key) as client:
        batch = await submit(client, lines)
        done = await until(client, batch.id, final)
        good, bad = await outputs(client, done.output_file_id), await outputs(client, done.error_file_id)
    assert done.status == "completed" and done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (2, 1)
    assert sorted(line["custom_id"] for line in good) == ["one", "two"]
    assert [line["custom_id"] for line in bad] == ["refused"]
    assert all(line["response"]["body"]["choices"][0]["message"]["content"] for line in good)
    stored = await objects(bucket(s3_env, where))
    assert set(stored) == {f"gateway/files/{f}" for f in (batch.input_file_id, done.output_file_id,
                                                          done.error_file_id)}
    assert local_files(where) == []  # the input was read from a temporary copy, removed after


async def test_retention_deletes_expired_files_object_then_row(s3_env: S3Server, settings: Settings) -> None:
    where = on_s3(settings, s3_env)
    key = make_key(where)
    async with sdk(where, key) as client:
        short = await client.files.create(file=("a.txt", io.BytesIO(b"short")), purpose="user_data",
                                          expires_after={"anchor": "created_at", "seconds": 3600})
        kept = await client.files.create(file=("b.txt", io.BytesIO(b"kept")), purpose="user_data")
        pruned = await anyio.to_thread.run_sync(  # off the event loop, as the server's housekeeping runs it
            lambda: prune(where.database, retention_of(where), now=time.time() + 7200))
        assert pruned.files == 1
        assert await objects(bucket(s3_env, where)) == {f"gateway/files/{kept.id}": 4}
        assert [f.id async for f in client.files.list()] == [kept.id]
        assert short.id != kept.id


async def test_a_batch_waits_for_an_unreachable_store_then_finishes(s3_env: S3Server, settings: Settings) -> None:
    good = on_s3(settings, s3_env)
    down = replace(good, blobs=replace(good.blobs, endpoint=f"http://127.0.0.1:{free_port()}"))  # nobody listens
    key = make_key(good, models=("gpt-4o-mini",))
    async with sdk(good, key) as client:
        upload = await client.files.create(file=("in.jsonl", io.BytesIO(json.dumps(chat_line("x")).encode())),
                                           purpose="batch")
    async with sdk(down, key) as client:  # its executor cannot read the input: the batch waits, unfailed
        batch = await client.batches.create(input_file_id=upload.id, endpoint=CHAT, completion_window="24h")
        await asyncio.sleep(1.0)
        assert (await client.batches.retrieve(batch.id)).status == "validating"
    async with sdk(good, key) as client:  # the next executor that reaches the store takes it up
        done = await until(client, batch.id, final)
        assert done.status == "completed" and [line["custom_id"] for line in await outputs(
            client, done.output_file_id)] == ["x"]


@pytest.fixture
def private_s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """A moto server of this test's own, which it may stop (s3_server first: skipped the same way)."""
    for server in _serve(start_s3):
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_access_key)
        yield server


async def test_a_store_gone_mid_way_is_a_503(private_s3: S3Server, settings: Settings) -> None:
    where = on_s3(settings, private_s3)
    key = make_key(where)
    async with sdk(where, key) as client:
        made = await client.files.create(file=("a.txt", io.BytesIO(b"hello")), purpose="user_data")
        assert (await client.files.content(made.id)).content == b"hello"
        private_s3.process.stop()
        with pytest.raises(openai.InternalServerError) as upload:
            await client.files.create(file=("b.txt", io.BytesIO(b"more")), purpose="user_data")
        with pytest.raises(openai.InternalServerError) as read:
            await client.files.content(made.id)
        with pytest.raises(openai.InternalServerError) as delete:
            await client.files.delete(made.id)
        listed = [f.id async for f in client.files.list()]  # the index is the database: still there
    for refused in (upload, read, delete):
        body = assert_error(refused.value, 503, "blob_storage_unavailable")
        assert where.blobs.url and where.blobs.url in body["message"]
        assert private_s3.secret_access_key not in refused.value.response.text
    assert listed == [made.id]  # the failed upload left no row, the failed delete kept its row
    assert local_files(where) == []


def test_without_blobs_files_stay_on_disk_without_obstore(tmp_path: Any) -> None:
    import subprocess
    import sys

    code = ("import sys; from cfai_cli.settings import load_settings; from cfai_cli.store.blobs import open_blobs;"
            "from cfai_cli.store.retention import retention_of; import cfai_cli.service.batch_executor;"
            "s = load_settings(environ={'CFAI_HOME': sys.argv[1]}); retention_of(s); "
            "print(type(open_blobs(s.blobs, s.files_dir, 'files')).__name__, 'obstore' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["DiskBlobs", "False"]
