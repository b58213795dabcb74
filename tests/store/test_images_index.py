"""store.images: the hosted images' index (ids, expiry) on either engine, the bytes beside it on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from cfai_cli.store.blobs import DiskBlobs
from cfai_cli.store.images import ImageStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_saved_found_until_expiry_then_purged(database: Path | str, tmp_path: Path) -> None:
    store = ImageStore(database, DiskBlobs(tmp_path / "images"), ttl_seconds=60)
    name = await store.save(b"\x89PNG old", "png", now=1000.0)
    found = await store.find(name, now=1059.0)
    assert found is not None and found.content_type == "image/png" and found.expires_at == 1060
    assert await store.find(name, now=1060.0) is None  # expired: gone for readers at once
    assert await store.find(name.replace(".png", ".webp"), now=1000.0) is None  # the format is part of the name
    assert await store.purge(now=1061.0) == 1
    assert not (tmp_path / "images" / name).exists()
    assert await store.purge(now=1061.0) == 0
