"""Hosted images on a BlobStore: the same behaviour on the data directory's disk and on a real S3-compatible
server (moto, tests/infra); an image made by one app instance served by another sharing the bucket and the
database; expiry removes the object, then the row; an unreachable store is a clear 503, never a URL that 404s."""

from __future__ import annotations

import stat
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import obstore
import pytest
from obstore.store import S3Store

from cfai_cli.core.blobs import BlobsConfig
from cfai_cli.core.translate.images import sniff_image
from cfai_cli.emulator.images import png
from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings
from cfai_cli.store.blobs import BlobStore, open_blobs
from cfai_cli.store.db import connect
from cfai_cli.store.images import ImageStore
from tests.infra.servers import S3Server
from tests.openai_schema import validate
from tests.servers import free_port

pytestmark = pytest.mark.anyio


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The credentials the way a deployment gives them: the standard AWS_* variables, never config.toml."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_access_key)
    return s3_server


def _s3(s3: S3Server, *, endpoint: str | None = None) -> tuple[BlobsConfig, str]:
    bucket = s3.create_bucket(f"cfai-{uuid.uuid4().hex[:12]}")
    return BlobsConfig(url=f"s3://{bucket}/gateway", endpoint=endpoint or s3.url, region=s3.region), bucket


@pytest.fixture(params=["disk", "s3"])
def where(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """Settings with hosted images on disk (the default) or in a fresh bucket of the S3 server."""
    if request.param == "disk":
        return settings.as_offline()
    config, _ = _s3(request.getfixturevalue("s3_env"))
    return replace(settings, blobs=config).as_offline()


def _raw_bucket(s3: S3Server, config: BlobsConfig) -> S3Store:
    """An independent client on the bucket (not cfai's), to see what is really there."""
    assert config.url
    bucket = config.url.removeprefix("s3://").split("/")[0]
    return S3Store(bucket, config={"endpoint": s3.url, "region": s3.region, "access_key_id": s3.access_key_id,
                                   "secret_access_key": s3.secret_access_key}, client_options={"allow_http": True})


def _store(settings: Settings) -> ImageStore:
    return ImageStore(settings.database, open_blobs(settings.blobs, settings.images_dir, "images"), ttl_seconds=60)


async def _app(settings: Settings, key: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test",
            headers={"Authorization": f"Bearer {key}"}) as client:
        yield client


def client(settings: Settings, key: str) -> Any:
    from contextlib import asynccontextmanager

    return asynccontextmanager(_app)(settings, key)


async def _make(http: httpx.AsyncClient) -> str:
    made = await http.post("/v1/images/generations", json={"prompt": "a lighthouse", "response_format": "url"})
    assert made.status_code == 200, made.text
    validate(made.json(), "ImagesResponse")
    url: str = made.json()["data"][0]["url"]
    assert url.startswith("http://proxy.test/v1/images/files/")
    return url


async def test_a_url_image_is_kept_where_configured_and_served(where: Settings, api_key: str,
                                                               request: pytest.FixtureRequest) -> None:
    async with client(where, api_key) as http:
        url = await _make(http)
        fetched = await http.get(url, headers={"Authorization": ""})  # the unguessable URL is the credential
    assert fetched.status_code == 200
    assert fetched.headers["content-type"] == "image/png"
    assert sniff_image(fetched.content).format == "png"
    assert int(fetched.headers["content-length"]) == len(fetched.content)
    name = url.rsplit("/", 1)[1]
    if where.blobs.url is None:
        path = where.images_dir / name
        assert path.read_bytes() == fetched.content and stat.S_IMODE(path.stat().st_mode) == 0o600
    else:
        assert not where.images_dir.exists()  # nothing on the local disk: the bucket holds it
        s3 = request.getfixturevalue("s3_env")
        got = await obstore.get_async(_raw_bucket(s3, where.blobs), f"gateway/images/{name}")
        assert bytes(await got.bytes_async()) == fetched.content
        assert got.attributes.get("Content-Type") == "image/png"


async def test_expiry_deletes_the_object_then_the_row(where: Settings) -> None:
    store = _store(where)
    blobs: BlobStore = store.blobs
    old = await store.save(png(8, 8, b"old"), "png", now=1000.0)
    assert await blobs.exists(old)
    assert await store.find(old, now=1059.0) is not None
    assert await store.find(old, now=1060.0) is None  # expired: not served even before the purge
    new = await store.save(png(8, 8, b"new"), "png", now=2000.0)  # saving purges what expired
    assert not await blobs.exists(old)
    assert await blobs.exists(new)
    with connect(where.database, "") as conn:
        ids = [row[0] for row in conn.execute("SELECT id || '.' || format FROM images")]
    assert ids == [new]
    assert await store.purge(now=3000.0) == 1 and not await blobs.exists(new)


@pytest.mark.parametrize("name", ["x" * 32 + ".png", "short.png", "A" * 32 + ".gif"])
async def test_unknown_or_malformed_names_are_404(where: Settings, api_key: str, name: str) -> None:
    async with client(where, api_key) as http:
        answer = await http.get(f"/v1/images/files/{name}")
    assert answer.status_code == 404
    assert set(answer.json()["error"]) == {"message", "type", "param", "code"}


async def test_an_image_made_by_one_instance_is_served_by_another(s3_env: S3Server, settings: Settings,
                                                                  api_key: str) -> None:
    config, _ = _s3(s3_env)
    shared = replace(settings, blobs=config).as_offline()
    async with client(shared, api_key) as a, client(shared, api_key) as b:
        url = await _make(a)
        served = await b.get(url)
        assert served.status_code == 200 and sniff_image(served.content).format == "png"
    assert not shared.images_dir.exists()  # so B could only have read it from the bucket
    # the same database without [blobs] knows the id but has no bytes: the bucket is what makes it shared
    async with client(settings.as_offline(), api_key) as local:
        assert (await local.get(url)).status_code == 404


async def test_an_unreachable_store_is_a_503_on_generate_and_on_fetch(s3_env: S3Server, settings: Settings,
                                                                      api_key: str) -> None:
    config, _ = _s3(s3_env)
    good = replace(settings, blobs=config).as_offline()
    down = replace(good, blobs=replace(config, endpoint=f"http://127.0.0.1:{free_port()}"))  # nobody listens
    async with client(good, api_key) as http:
        url = await _make(http)
    async with client(down, api_key) as http:
        made = await http.post("/v1/images/generations", json={"prompt": "p", "response_format": "url"})
        fetched = await http.get(url)
        b64 = await http.post("/v1/images/generations", json={"prompt": "p"})
    for answer in (made, fetched):
        assert answer.status_code == 503, answer.text
        error = answer.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["code"] == "blob_storage_unavailable" and config.url in error["message"]
        assert s3_env.secret_access_key not in answer.text
    assert b64.status_code == 200  # base64 answers never touch the store
    with connect(good.database, "") as conn:  # the failed generation left no row naming missing bytes
        assert conn.execute("SELECT count(*) FROM images").fetchone()[0] == 1


def test_no_blobs_setting_keeps_images_on_disk_without_obstore(settings: Settings, tmp_path: Path) -> None:
    import subprocess
    import sys

    code = ("import sys; from cfai_cli.settings import load_settings; from cfai_cli.store.blobs import open_blobs;"
            "s = load_settings(environ={'CFAI_HOME': sys.argv[1]}); "
            "print(type(open_blobs(s.blobs, s.images_dir, 'images')).__name__, 'obstore' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["DiskBlobs", "False"]


async def test_an_http_endpoint_from_the_environment_alone_is_allowed(s3_env: S3Server,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A deployment may name its MinIO only in AWS_ENDPOINT_URL (compose.yaml); plain HTTP must work for it,
    though cfai's own client options replace obstore's reading of AWS_ALLOW_HTTP."""
    config = replace(_s3(s3_env)[0], endpoint=None)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_env.url)
    monkeypatch.setenv("AWS_REGION", s3_env.region)
    blobs = open_blobs(config, Path("/nonexistent"), f"env-{uuid.uuid4().hex[:8]}")
    await blobs.put("one", b"hello", content_type="text/plain")
    assert await blobs.exists("one")
