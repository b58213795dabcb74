"""Images through the proxy: the real openai SDK (b64 and url, fetching the URL, edits), every upstream shape,
distinct seeds for n, content-policy errors, hosted-file safety and expiry."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
import pytest

from cfai_cli.core import jsonfast
from cfai_cli.core.translate.images import sniff_image
from cfai_cli.emulator.images import _JPEG_64, png
from cfai_cli.server.app import create_app
from cfai_cli.service import images as service_images
from cfai_cli.settings import Settings
from cfai_cli.store.blobs import DiskBlobs
from cfai_cli.store.images import ImageStore
from tests.fake_workers import FakeWorkers, envelope, error_envelope
from tests.openai_schema import validate
from tests.sdk import sdk_httpx

pytestmark = pytest.mark.anyio


FLUX = "@cf/black-forest-labs/flux-1-schnell"
SDXL = "@cf/stabilityai/stable-diffusion-xl-base-1.0"


@asynccontextmanager
async def offline_sdk(settings: Settings, key: str) -> AsyncIterator[tuple[openai.AsyncOpenAI, Any]]:
    app = create_app(settings.as_offline())
    async with app.router.lifespan_context(app), sdk_httpx.AsyncClient(
        transport=sdk_httpx.ASGITransport(app=app), base_url="http://proxy.test/v1"
    ) as http:
        yield openai.AsyncOpenAI(api_key=key, base_url="http://proxy.test/v1", http_client=http, max_retries=0,
                                 _strict_response_validation=True), http


async def test_sdk_generate_b64_and_url_then_fetch(settings: Settings, api_key: str) -> None:
    async with offline_sdk(settings, api_key) as (client, http):
        b64 = await client.images.generate(model="dall-e-3", prompt="a red fox in snow", n=2)
        assert b64.output_format == "png" and b64.size == "1024x1024"
        pictures = [base64.b64decode(d.b64_json or "") for d in b64.data]
        assert all(sniff_image(p).format == "png" for p in pictures)
        urls = await client.images.generate(model=SDXL, prompt="a lighthouse", size="512x768",
                                             response_format="url")
        url = urls.data[0].url or ""
        assert url.startswith("http://proxy.test/v1/images/files/") and url.endswith(".png")
        fetched = await http.get(url)  # no key: the unguessable URL is the credential by default
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
    info = sniff_image(fetched.content)
    assert (info.width, info.height) == (512, 768)
    assert "private" in fetched.headers["cache-control"]


async def test_sdk_edit_with_and_without_mask(settings: Settings, api_key: str) -> None:
    source = png(512, 512, b"src")
    async with offline_sdk(settings, api_key) as (client, _):
        edited = await client.images.edit(image=("in.png", io.BytesIO(source), "image/png"), prompt="make it night")
        inpainted = await client.images.edit(image=("in.png", io.BytesIO(source), "image/png"),
                                             mask=("mask.png", io.BytesIO(png(512, 512, b"msk")), "image/png"),
                                             prompt="add a moon", size="512x512", response_format="b64_json")
    for result in (edited, inpainted):
        assert sniff_image(base64.b64decode(result.data[0].b64_json or "")).format == "png"


async def test_every_upstream_shape_becomes_the_same_response(proxy, fake: FakeWorkers) -> None:
    picture = png(64, 64, b"abc")
    fake.models[FLUX] = lambda r, b: httpx.Response(200, json=envelope({"image": base64.b64encode(picture).decode()}))
    fake.models[SDXL] = lambda r, b: httpx.Response(200, headers={"content-type": "image/png"}, content=picture)
    fake.models["@cf/leonardo/phoenix-1.0"] = lambda r, b: httpx.Response(
        200, headers={"content-type": "image/jpeg"}, content=_JPEG_64)
    seen_forms: list[bytes] = []

    def flux2(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        seen_forms.append(request.content)
        return httpx.Response(200, json=envelope({"image": base64.b64encode(picture).decode()}))

    fake.models["@cf/black-forest-labs/flux-2-dev"] = flux2
    async with proxy() as client:
        for model, fmt in ((FLUX, "png"), (SDXL, "png"), ("@cf/leonardo/phoenix-1.0", "jpeg"),
                           ("@cf/black-forest-labs/flux-2-dev", "png")):
            body = (await client.post("/v1/images/generations", json={"model": model, "prompt": "p"})).json()
            validate(body, "ImagesResponse")
            assert body["output_format"] == fmt, model
            assert base64.b64decode(body["data"][0]["b64_json"])[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0")
    assert b'name="prompt"' in seen_forms[0]


async def test_a_base64_jpeg_is_handed_on_as_it_came(proxy, fake: FakeWorkers,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Big enough that its size could only be read from the first bytes: the JPEG header, then ~300 KB.
    picture = _JPEG_64[:-2] + bytes(range(256)) * 1200 + b"\xff\xd9"
    encoded = base64.b64encode(picture).decode()
    fake.models[FLUX] = lambda r, b: httpx.Response(200, json=envelope({"image": "data:image/jpeg;base64,"
                                                                                  + encoded}))
    decoded: list[int] = []
    real = service_images.image_bytes
    monkeypatch.setattr(service_images, "image_bytes", lambda **kw: decoded.append(1) or real(**kw))
    async with proxy() as client:
        answer = await client.post("/v1/images/generations", json={"model": FLUX, "prompt": "p", "n": 2})
        body = answer.json()
        assert decoded == []  # the text itself went out, never decoded and encoded again
        stored = (await client.post("/v1/images/generations", json={"model": FLUX, "prompt": "p",
                                                                    "response_format": "url"})).json()
        fetched = await client.get(stored["data"][0]["url"])
    validate(body, "ImagesResponse")
    assert [d["b64_json"] for d in body["data"]] == [encoded, encoded]
    assert body["output_format"] == "jpeg" and body.get("size") is None  # 64x64 is not an OpenAI size
    assert fetched.content == picture  # decoded where the bytes themselves are needed
    # Sent image by image (server.responses.PiecewiseJSONResponse): the bytes and length of the answer whole.
    assert answer.content == jsonfast.dumps(body) and answer.headers["content-length"] == str(len(answer.content))


async def test_an_image_cut_from_the_answer_goes_out_as_a_view_of_it(settings: Settings, api_key: str,
                                                                     fake: FakeWorkers) -> None:
    # Canonical base64 under result.image (core.workers.image_cut): sent as a view of the upstream answer's bytes,
    # never copied into a str and a rendering (issue 25, round 8); the answer's bytes are those of the whole.
    encoded = base64.b64encode(_JPEG_64[:-2] + bytes(range(256)) * 1200 + b"\xff\xd9")
    fake.models[FLUX] = lambda r, b: httpx.Response(200, json=envelope({"image": encoded.decode()}))
    app = create_app(settings, transport=fake.transport())
    bodies: list[Any] = []

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        async def sending(message: Any) -> None:
            if message["type"] == "http.response.body":
                bodies.append(message["body"])
            await send(message)

        await app(scope, receive, sending)

    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=recording), base_url="http://proxy.test",
        headers={"Authorization": f"Bearer {api_key}"}) as client:
        answer = await client.post("/v1/images/generations", json={"model": FLUX, "prompt": "p", "n": 2})
    body = answer.json()
    assert [d["b64_json"] for d in body["data"]] == [encoded.decode()] * 2
    assert answer.content == jsonfast.dumps(body) == b"".join(bodies)
    views = [sent for sent in bodies if isinstance(sent, memoryview)]
    assert [bytes(view) for view in views] == [encoded] * 2 and all(isinstance(view.obj, bytes) for view in views)


async def test_n_images_use_distinct_seeds(proxy, fake: FakeWorkers) -> None:
    fake.models[SDXL] = lambda r, b: httpx.Response(200, headers={"content-type": "image/png"},
                                                    content=png(32, 32, str(b["seed"]).encode() * 3))
    async with proxy() as client:
        body = (await client.post("/v1/images/generations", json={"model": SDXL, "prompt": "p", "n": 3,
                                                                  "seed": 100})).json()
    assert sorted(call[1]["seed"] for call in fake.calls) == [100, 101, 102]
    assert len({d["b64_json"] for d in body["data"]}) == 3


def black_png() -> bytes:
    """What a safety filter sends instead of a picture: every pixel zero."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = (b"\x00" + b"\x00" * 3 * 16) * 16
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.mark.parametrize(("handler", "code"), [
    (lambda r, b: httpx.Response(400, json=error_envelope(3030, "AiError: Input prompt contains NSFW content")),
     "content_policy_violation"),
    (lambda r, b: httpx.Response(200, headers={"content-type": "image/png"}, content=black_png()),
     "content_policy_violation"),
])
async def test_safety_refusals_are_errors_not_blank_images(proxy, fake: FakeWorkers, handler: Any, code: str) -> None:
    fake.models[SDXL] = handler
    async with proxy() as client:
        response = await client.post("/v1/images/generations", json={"model": SDXL, "prompt": "p"})
    assert response.status_code == 400, response.text
    validate(response.json(), "ErrorResponse")
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize(("payload", "param"), [
    ({"prompt": "p", "size": "4096x4096", "model": SDXL}, "size"),
    ({"prompt": "p", "size": "4096x1024"}, "size"),  # dall-e-3 (flux-2-klein): 256 to 1920 a side
    ({"prompt": ""}, "prompt"),
    ({"prompt": "p", "n": 11}, "n"),
    ({"prompt": "p", "stream": True}, "stream"),
    ({"prompt": "p", "response_format": "gif"}, "response_format"),
])
async def test_bad_requests(proxy, fake: FakeWorkers, payload: dict[str, Any], param: str) -> None:
    async with proxy() as client:
        response = await client.post("/v1/images/generations", json=payload)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert fake.calls == []


async def test_edits_need_multipart_and_an_image(proxy) -> None:
    async with proxy() as client:
        as_json = await client.post("/v1/images/edits", json={"prompt": "p"})
        no_image = await client.post("/v1/images/edits", files={"prompt": (None, "p")})
        bad_n = await client.post("/v1/images/edits", files={"prompt": (None, "p"), "n": (None, "two"),
                                                              "image": ("a.png", b"\x89PNG", "image/png")})
    assert as_json.status_code == 415 and as_json.json()["error"]["code"] == "unsupported_media_type"
    assert no_image.status_code == 400 and no_image.json()["error"]["param"] == "image"
    assert bad_n.status_code == 400 and bad_n.json()["error"]["param"] == "n"


@pytest.mark.parametrize("name", ["../cfai.db", "..%2Fcfai.db", "x.png", "A" * 32 + ".gif", "A" * 31 + ".png",
                                  "%2e%2e/%2e%2e/etc/passwd"])
async def test_files_route_rejects_traversal_and_unknown_ids(proxy, name: str) -> None:
    async with proxy(key=None) as client:
        response = await client.get(f"/v1/images/files/{name}")
    # 404 for names the index does not know; paths that leave /images/files/ are not open at all (401).
    assert response.status_code in (401, 404)
    assert response.headers["content-type"].startswith("application/json")
    assert b"SQLite" not in response.content


async def test_expired_images_are_gone_and_files_can_require_a_key(settings: Settings, api_key: str, tmp_path) -> None:
    store = ImageStore(settings.database, DiskBlobs(settings.images_dir), ttl_seconds=60)
    name = await store.save(png(8, 8, b"old"), "png", now=1000.0)
    assert await store.find(name, now=1059.0) is not None
    assert await store.find(name, now=1060.0) is None
    await store.save(png(8, 8, b"new"), "png", now=2000.0)  # saving purges what expired
    assert not (settings.images_dir / name).exists()

    from dataclasses import replace

    locked = replace(settings, image_url_auth=True).as_offline()
    app = create_app(locked)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test") as client:
        made = await client.post("/v1/images/generations", headers={"Authorization": f"Bearer {api_key}"},
                                 json={"prompt": "p", "response_format": "url"})
        url = made.json()["data"][0]["url"]
        assert (await client.get(url)).status_code == 401
        assert (await client.get(url, headers={"Authorization": f"Bearer {api_key}"})).status_code == 200
