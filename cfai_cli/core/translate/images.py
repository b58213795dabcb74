"""Images <-> Workers AI: what each image model family accepts (reference §5), and reading what it returns.

Pure: standard library, cfai_cli.errors and cfai_cli.core. Families are data; a request becomes a JSON
body or multipart fields for one upstream call (one image per call), and any answer shape (JSON base64,
raw PNG/JPEG bytes) becomes image bytes whose real format and size are read from their headers.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cfai_cli.core.catalog import FLUX_2_KLEIN, FLUX_2_KLEIN_HD
from cfai_cli.core.openai.images import ImageGenerationRequest
from cfai_cli.core.workers.image_cut import canonical_base64
from cfai_cli.errors import InvalidRequest, UpstreamError

OPENAI_SIZES = frozenset({"256x256", "512x512", "1024x1024", "1792x1024", "1024x1792", "1536x1024", "1024x1536"})
_SIZE = re.compile(r"^(\d{2,5})x(\d{2,5})$")


@dataclass(frozen=True, slots=True)
class ImageFamily:
    name: str
    sizes: tuple[int, int] | None = None  # smallest and largest side in pixels; None = fixed output size
    steps_key: str | None = None
    steps_hd: int | None = None  # steps for quality hd/high (the model's default otherwise)
    default_steps: int | None = None  # what the model runs when sent none (reference §5): for cost estimates
    guidance: tuple[float, float, float] | None = None  # (min, max, default)
    seed: bool = False
    negative_prompt: bool = False
    multipart: bool = False
    edits: bool = False  # takes an input image (img2img) and a mask (inpainting)
    prompt_max: int | None = None
    default_size: tuple[int, int] | None = None  # sent when no size is asked; None = the model's own default
    extra: Mapping[str, Any] = field(default_factory=dict)


FLUX1 = ImageFamily("flux-1-schnell", steps_key="steps", steps_hd=8, default_steps=4, prompt_max=2048)
SDXL = ImageFamily("sdxl", sizes=(256, 2048), steps_key="num_steps", steps_hd=20, default_steps=20,
                   guidance=(0.0, 30.0, 7.5), seed=True, negative_prompt=True, edits=True)
SD15_EDIT = ImageFamily("sd-1.5-edit", sizes=(256, 2048), steps_key="num_steps", steps_hd=20, default_steps=20,
                        guidance=(0.0, 30.0, 7.5), seed=True, negative_prompt=True, edits=True)
PHOENIX = ImageFamily("phoenix", sizes=(64, 2048), steps_key="num_steps", steps_hd=40, default_steps=25,
                      guidance=(2.0, 10.0, 2.0), seed=True, negative_prompt=True)
LUCID = ImageFamily("lucid-origin", sizes=(64, 2500), steps_key="num_steps", steps_hd=40, guidance=(0.0, 10.0, 4.5),
                    seed=True)
# FLUX.2's own default is 1024x768; OpenAI's is 1024x1024, which is what a client that sends no size expects.
FLUX2 = ImageFamily("flux-2", sizes=(256, 1920), steps_key="steps", steps_hd=50, guidance=(1.0, 10.0, 4.0),
                    seed=True, multipart=True, default_size=(1024, 1024))
FLUX2_KLEIN = ImageFamily("flux-2-klein", sizes=(256, 1920), default_steps=4, seed=True, multipart=True,
                          default_size=(1024, 1024))
GENERIC = ImageFamily("generic")

_FAMILIES: list[tuple[re.Pattern[str], ImageFamily]] = [
    (re.compile(r"^@cf/black-forest-labs/flux-1-schnell$"), FLUX1),
    (re.compile(r"^@cf/black-forest-labs/flux-2-klein"), FLUX2_KLEIN),
    (re.compile(r"^@cf/black-forest-labs/flux-2"), FLUX2),
    (re.compile(r"^@cf/(stabilityai/stable-diffusion-xl|bytedance/stable-diffusion-xl|lykon/dreamshaper)"), SDXL),
    (re.compile(r"^@cf/runwayml/stable-diffusion-v1-5-(img2img|inpainting)$"), SD15_EDIT),
    (re.compile(r"^@cf/leonardo/phoenix"), PHOENIX),
    (re.compile(r"^@cf/leonardo/lucid-origin"), LUCID),
]

DEFAULT_EDIT_MODEL = "@cf/runwayml/stable-diffusion-v1-5-img2img"
DEFAULT_INPAINT_MODEL = "@cf/runwayml/stable-diffusion-v1-5-inpainting"


def image_family(model_id: str) -> ImageFamily:
    return next((family for pattern, family in _FAMILIES if pattern.match(model_id)), GENERIC)


def image_model_for(name: str, model_id: str, quality: str | None) -> str:
    """The model for one request: an alias of FLUX.2 klein 4B asked for quality hd/high gets the 9B model
    (docs/images.md); an explicit id is always kept, and so is any other alias target."""
    if "@" not in name and model_id == FLUX_2_KLEIN and quality in ("hd", "high"):
        return FLUX_2_KLEIN_HD
    return model_id


def parse_size(size: str | None, family: ImageFamily) -> tuple[int, int] | None:
    """(width, height) to send, or None for the model's default; a clear 400 for what cannot be made."""
    if size is None or size == "auto":
        return None
    match = _SIZE.fullmatch(size)
    if not match:
        raise InvalidRequest(f"Invalid size {size!r}: use WIDTHxHEIGHT, e.g. '1024x1024', or 'auto'.", param="size",
                             code="invalid_value")
    if family.sizes is None:
        if size in OPENAI_SIZES:
            return None  # fixed-size models make their own size; the answer reports it
        raise InvalidRequest(
            f"This model makes images of a fixed size, so size {size!r} cannot be served; omit size or use a model "
            "that takes sizes, e.g. @cf/stabilityai/stable-diffusion-xl-base-1.0.", param="size", code="invalid_value")
    width, height = int(match.group(1)), int(match.group(2))
    low, high = family.sizes
    if not (low <= width <= high and low <= height <= high):
        raise InvalidRequest(f"size {size!r} is outside what this model makes: each side from {low} to {high} pixels.",
                             param="size", code="invalid_value")
    # Diffusion models work in 8-pixel latent blocks; round down rather than fail.
    return width - width % 8, height - height % 8


@dataclass(slots=True)
class ImageCall:
    model_id: str
    json_body: dict[str, Any] | None = None
    form: dict[str, str] | None = None


def to_workers_image(req: ImageGenerationRequest, model_id: str, *, seed: int | None,
                     image: bytes | None = None, mask: bytes | None = None) -> ImageCall:
    """The upstream call for one image of `req` (the service makes `n` of them with distinct seeds)."""
    family = image_family(model_id)
    if family.prompt_max is not None and len(req.prompt) > family.prompt_max:
        raise InvalidRequest(f"'prompt' is too long for this model ({len(req.prompt)} characters; at most "
                             f"{family.prompt_max}).", param="prompt", code="invalid_value")
    body: dict[str, Any] = {"prompt": req.prompt}
    size = parse_size(req.size, family) or family.default_size
    if size is not None:
        body["width"], body["height"] = size
    if family.steps_key and family.steps_hd and req.quality in ("hd", "high"):
        body[family.steps_key] = family.steps_hd
    if family.guidance is not None and req.style is not None:
        low, high, default = family.guidance
        # vivid leans harder on the prompt (more guidance), natural keeps the model's default.
        body["guidance"] = round(min(high, max(low, default * 1.5)), 2) if req.style == "vivid" else default
    if family.seed and seed is not None:
        body["seed"] = seed
    if family.negative_prompt and req.negative_prompt:
        body["negative_prompt"] = req.negative_prompt
    if image is not None:
        if not family.edits:
            raise InvalidRequest("This model cannot edit images; use @cf/runwayml/stable-diffusion-v1-5-img2img "
                                 "or -inpainting.", param="model", code="invalid_value")
        body["image_b64"] = base64.b64encode(image).decode("ascii")
        strength = getattr(req, "strength", None)
        if strength is not None:
            body["strength"] = strength
        if mask is not None:
            body["mask"] = list(mask)  # the schema's mask is a byte array
    if family.multipart:
        return ImageCall(model_id, form={k: str(v) for k, v in body.items()})
    return ImageCall(model_id, json_body=body)


# ---- answers ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageInfo:
    format: str  # "png" | "jpeg" | "webp"
    width: int | None
    height: int | None

    @property
    def content_type(self) -> str:
        return f"image/{self.format}"


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        i += 2 + length
    return None


def sniff_image(data: bytes) -> ImageInfo:
    """Format and pixel size from the bytes themselves (Workers AI does not always say, reference §14.6)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return ImageInfo("png", width, height)
    if data.startswith(b"\xff\xd8\xff"):
        size = _jpeg_size(data)
        return ImageInfo("jpeg", *(size or (None, None)))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        chunk = data[12:16]
        if chunk == b"VP8X" and len(data) >= 30:
            width = int.from_bytes(data[24:27], "little") + 1
            return ImageInfo("webp", width, int.from_bytes(data[27:30], "little") + 1)
        if chunk == b"VP8 " and len(data) >= 30:
            width, height = struct.unpack("<HH", data[26:30])
            return ImageInfo("webp", width & 0x3FFF, height & 0x3FFF)
        if chunk == b"VP8L" and len(data) >= 25:
            bits = int.from_bytes(data[21:25], "little")
            return ImageInfo("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        return ImageInfo("webp", None, None)
    raise UpstreamError("Workers AI returned something that is not a PNG, JPEG or WebP image.")


def is_blank_png(data: bytes) -> bool:
    """True for a PNG whose pixels are all zero: what a safety filter leaves instead of an image."""
    pos, idat = 8, bytearray()
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat.extend(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    try:
        pixels = zlib.decompress(bytes(idat))
    except zlib.error:
        return False
    return bool(pixels) and not any(pixels)


SNIFF_CHARS = 64 * 1024  # base64 characters (a multiple of 4): 48 KiB of image, where formats keep their size


def passable_base64(result: Any) -> str | None:
    """The base64 text of a JSON answer's image (a `data:` prefix left out) when a client can be handed it as
    it is: the standard alphabet, padded, nothing else. Decoding 1 MB of base64 and encoding it again took
    ~17 ms an image here (bench/payloads.py); checking it takes ~0.5 (core.workers.image_cut). None
    otherwise (no such text, or text that `image_bytes` must judge)."""
    encoded = result.get("image") if isinstance(result, Mapping) else None
    if not isinstance(encoded, str) or not encoded:
        return None
    if encoded.startswith("data:"):
        encoded = encoded.split(",", 1)[1] if "," in encoded else ""
    if not encoded.isascii() or not canonical_base64(encoded.encode("ascii")):
        return None
    return encoded


def image_bytes(*, body: bytes | None, result: Any) -> bytes:
    """The image of one upstream answer: raw bytes, or base64 under `result.image`."""
    if body is not None:
        if not body:
            raise UpstreamError("Workers AI returned an empty image.")
        return body
    encoded = result.get("image") if isinstance(result, Mapping) else None
    if not isinstance(encoded, str) or not encoded:
        if isinstance(result, Mapping) and isinstance(result.get("response"), str):
            # A text answer: the model asked for is a text model, which is the request's mistake, not a failure.
            raise InvalidRequest("This model answers text, not images; use an image model such as dall-e-3 or "
                                 "@cf/black-forest-labs/flux-1-schnell.", param="model", code="invalid_model")
        raise UpstreamError("Workers AI returned no image.")
    try:
        return base64.b64decode(encoded.split(",", 1)[1] if encoded.startswith("data:") else encoded, validate=True)
    except (binascii.Error, ValueError):
        raise UpstreamError("Workers AI returned an image that is not valid base64.") from None
