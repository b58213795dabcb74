"""Image translation: each model family's body, size rules, and reading any answer shape as real image bytes."""

from __future__ import annotations

import base64
import struct
import zlib

import pytest

from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.images import ImageEditRequest, ImageGenerationRequest
from cfai_cli.core.translate.images import (
    FLUX1,
    GENERIC,
    SDXL,
    image_bytes,
    image_family,
    is_blank_png,
    parse_size,
    passable_base64,
    sniff_image,
    to_workers_image,
)
from cfai_cli.emulator.images import _JPEG_64, png
from cfai_cli.errors import InvalidRequest, UpstreamError

FLUX = "@cf/black-forest-labs/flux-1-schnell"
SDXL_ID = "@cf/stabilityai/stable-diffusion-xl-base-1.0"


def req(**fields: object) -> ImageGenerationRequest:
    return validate_request(ImageGenerationRequest, {"prompt": "a fox", **fields})


@pytest.mark.parametrize(("model", "family"), [
    (FLUX, "flux-1-schnell"), (SDXL_ID, "sdxl"), ("@cf/bytedance/stable-diffusion-xl-lightning", "sdxl"),
    ("@cf/lykon/dreamshaper-8-lcm", "sdxl"), ("@cf/leonardo/phoenix-1.0", "phoenix"),
    ("@cf/leonardo/lucid-origin", "lucid-origin"), ("@cf/black-forest-labs/flux-2-dev", "flux-2"),
    ("@cf/black-forest-labs/flux-2-klein-4b", "flux-2-klein"),
    ("@cf/runwayml/stable-diffusion-v1-5-inpainting", "sd-1.5-edit"), ("@cf/acme/new-painter", "generic"),
])
def test_families(model: str, family: str) -> None:
    assert image_family(model).name == family


@pytest.mark.parametrize(("size", "family", "expected"), [
    (None, SDXL, None), ("auto", SDXL, None), ("1024x768", SDXL, (1024, 768)), ("1001x1001", SDXL, (1000, 1000)),
    ("1024x1024", FLUX1, None), ("1792x1024", FLUX1, None), ("256x256", GENERIC, None),
])
def test_sizes(size: str | None, family: object, expected: tuple[int, int] | None) -> None:
    assert parse_size(size, family) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(("size", "family", "words"), [
    ("big", SDXL, "WIDTHxHEIGHT"), ("4096x4096", SDXL, "256 to 2048"), ("100x1024", SDXL, "256 to 2048"),
    ("640x480", FLUX1, "fixed size"),
])
def test_sizes_that_cannot_be_served_are_clear_400s(size: str, family: object, words: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_size(size, family)  # type: ignore[arg-type]
    assert info.value.param == "size" and words in info.value.message


def test_flux1_gets_only_what_its_schema_allows() -> None:
    call = to_workers_image(req(size="1024x1024", quality="hd", style="vivid", negative_prompt="x"), FLUX, seed=7)
    assert call.json_body == {"prompt": "a fox", "steps": 8} and call.form is None
    with pytest.raises(InvalidRequest, match="too long"):
        to_workers_image(req(prompt="x" * 2049), FLUX, seed=1)


def test_sdxl_body() -> None:
    call = to_workers_image(req(size="768x512", quality="hd", style="natural", negative_prompt="blur"), SDXL_ID,
                            seed=42)
    assert call.json_body == {"prompt": "a fox", "width": 768, "height": 512, "num_steps": 20, "guidance": 7.5,
                              "seed": 42, "negative_prompt": "blur"}
    vivid = to_workers_image(req(style="vivid"), SDXL_ID, seed=1).json_body
    assert vivid is not None and vivid["guidance"] == 11.25


def test_flux2_is_multipart_fields() -> None:
    call = to_workers_image(req(size="1024x768"), "@cf/black-forest-labs/flux-2-dev", seed=3)
    assert call.json_body is None
    assert call.form == {"prompt": "a fox", "width": "1024", "height": "768", "seed": "3"}


def test_edits_send_the_image_and_mask() -> None:
    edit = validate_request(ImageEditRequest, {"prompt": "night", "strength": 0.6})
    call = to_workers_image(edit, "@cf/runwayml/stable-diffusion-v1-5-inpainting", seed=1, image=b"\x89PNGimg",
                            mask=b"\x01\x02")
    assert call.json_body is not None
    assert base64.b64decode(call.json_body["image_b64"]) == b"\x89PNGimg"
    assert call.json_body["mask"] == [1, 2] and call.json_body["strength"] == 0.6
    with pytest.raises(InvalidRequest, match="cannot edit"):
        to_workers_image(edit, FLUX, seed=1, image=b"x")


def test_sniffing_real_images() -> None:
    picture = png(320, 200, b"abc")
    assert (sniff_image(picture).format, sniff_image(picture).width, sniff_image(picture).height) == ("png", 320, 200)
    jpeg = sniff_image(_JPEG_64)
    assert (jpeg.format, jpeg.width, jpeg.height, jpeg.content_type) == ("jpeg", 64, 64, "image/jpeg")
    vp8x = b"RIFF\x00\x00\x00\x00WEBPVP8X" + b"\x00" * 8 + (99).to_bytes(3, "little") + (49).to_bytes(3, "little")
    assert (sniff_image(vp8x).width, sniff_image(vp8x).height) == (100, 50)
    with pytest.raises(UpstreamError):
        sniff_image(b"<html>nope</html>")


def _png_of(pixels: bytes, width: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + pixels[i : i + 3 * width] for i in range(0, len(pixels), 3 * width))
    header = struct.pack(">IIBBBBB", width, len(pixels) // (3 * width), 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_blank_png_detection() -> None:
    assert is_blank_png(_png_of(b"\x00" * 3 * 16, 4))
    assert not is_blank_png(_png_of(b"\x00" * 45 + b"\x01\x00\x00", 4))
    assert not is_blank_png(png(64, 64, b"xyz"))


def test_image_bytes_from_every_answer_shape() -> None:
    picture = png(8, 8, b"key")
    assert image_bytes(body=picture, result=None) == picture
    encoded = base64.b64encode(picture).decode()
    assert image_bytes(body=None, result={"image": encoded}) == picture
    assert image_bytes(body=None, result={"image": "data:image/png;base64," + encoded}) == picture
    for bad in ({}, {"image": ""}, {"image": "***"}, None):
        with pytest.raises(UpstreamError):
            image_bytes(body=None, result=bad)
    with pytest.raises(UpstreamError):
        image_bytes(body=b"", result=None)


def test_only_canonical_base64_is_handed_on_as_it_is() -> None:
    encoded = base64.b64encode(_JPEG_64 + b"\x00\x01").decode()
    assert passable_base64({"image": encoded}) == encoded
    assert passable_base64({"image": "data:image/jpeg;base64," + encoded}) == encoded
    # Anything a client's decoder might read differently is left to image_bytes (decoded, checked, re-encoded).
    for odd in (encoded[:-1], encoded[:40] + "\n" + encoded[40:], encoded.replace("+", "-").replace("/", "_"),
                "QUJD=", "ab=c", "", "data:image/png;base64,", "data:nocomma", "A===", "QUJD====", "QU=D",
                "QUJ\u00e9", encoded[:-4] + "QUJ\u00e9", encoded + "\x00AAA"):
        assert passable_base64({"image": odd}) is None, odd
    for shape in ({}, {"image": None}, {"image": 3}, None, [encoded]):
        assert passable_base64(shape) is None
