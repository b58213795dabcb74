"""Image generation and edits for both front ends: n parallel calls with distinct seeds, real formats, URLs.

Imports core, upstream (through Context), store, errors. A safety filter's answer (an error that says so,
or an all-black PNG) becomes a clear content-policy error, never a blank picture handed to the user.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from typing import cast

from cfai_cli.core.catalog import resolve_model
from cfai_cli.core.cost import tiles_of
from cfai_cli.core.jsonfast import AsciiText
from cfai_cli.core.openai.images import ImageGenerationRequest, ImageOut, ImagesResponse
from cfai_cli.core.translate.images import (
    DEFAULT_EDIT_MODEL,
    DEFAULT_INPAINT_MODEL,
    SNIFF_CHARS,
    ImageCall,
    ImageInfo,
    image_bytes,
    image_family,
    image_model_for,
    is_blank_png,
    passable_base64,
    sniff_image,
    to_workers_image,
)
from cfai_cli.errors import InvalidRequest
from cfai_cli.service.context import Context
from cfai_cli.service.gather import gather_all
from cfai_cli.store.blobs import open_blobs
from cfai_cli.store.images import ImageStore

DEFAULT_IMAGE_MODEL = "dall-e-3"
_POLICY_WORDS = ("nsfw", "safety", "content policy", "flagged", "inappropriate", "not allowed to generate")
_RESPONSE_SIZES = {"1024x1024", "1024x1536", "1536x1024"}


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    """One image: its bytes, or the base64 text Workers AI sent (handed on as it is, decoded only if asked): a
    view of the upstream answer's bytes when it was cut from them (core.workers.image_cut), else a str."""

    raw: bytes | None
    info: ImageInfo
    encoded: str | memoryview | None = None

    @property
    def data(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return base64.b64decode(self.encoded or "")

    def b64(self) -> str:
        encoded = self.encoded
        if encoded is None:
            return base64.b64encode(self.data).decode("ascii")
        return encoded if isinstance(encoded, str) else str(encoded, "ascii")

    def b64_text(self) -> AsciiText:
        """The base64 text for a JSON answer, not copied out of the upstream answer it came in (server.routes.images
        sends it as it is: four 1.3 MB images, one copy each less held; issue 25, round 8)."""
        encoded = self.encoded
        return AsciiText(base64.b64encode(self.data) if encoded is None else encoded)


def image_store(ctx: Context) -> ImageStore:
    s = ctx.settings
    return ImageStore(s.storage, open_blobs(s.blobs, s.images_dir, "images"), ttl_seconds=s.image_ttl_hours * 3600)


def _policy_error(message: str) -> InvalidRequest:
    return InvalidRequest(f"The image was refused by Workers AI's safety filter: {message}", param="prompt",
                          code="content_policy_violation")


async def _one(ctx: Context, call: ImageCall) -> GeneratedImage:
    try:
        answer = await ctx.workers.run_raw(call.model_id, json_body=call.json_body, form=call.form)
    except InvalidRequest as exc:
        if any(word in exc.message.lower() for word in _POLICY_WORDS):
            raise _policy_error(exc.message) from None
        raise
    encoded = answer.image if answer.image is not None else passable_base64(answer.result) if answer.body is None \
        else None
    image: GeneratedImage | None = None
    if encoded is not None:
        # The image's size is in its first bytes; a PNG is read whole anyway (the blank-image check).
        info = sniff_image(base64.b64decode(encoded[:SNIFF_CHARS]))
        if info.format != "png" and info.width is not None:
            image = GeneratedImage(None, info, encoded)
    if image is None:
        # Cut from the answer (canonical, so valid and not empty), else judged by image_bytes.
        data = base64.b64decode(answer.image, validate=True) if answer.image is not None \
            else image_bytes(body=answer.body, result=answer.result)
        info = sniff_image(data)
        if info.format == "png" and is_blank_png(data):
            raise _policy_error("it answered with a blank image.")
        image = GeneratedImage(data, info)
    # What the call used, for estimating its neurons where Workers AI reports none (service.cost).
    ctx.record.tiles += tiles_of(info.width or 1024, info.height or 1024)
    ctx.record.steps += _steps(call)
    return image


FALLBACK_STEPS = 4  # for a model whose default the reference does not give (lucid-origin, flux-2-dev)


def _steps(call: ImageCall) -> int:
    """The diffusion steps a call asked for (`steps` or `num_steps`), else the model's own default (SDXL 20,
    phoenix 25, flux-1-schnell 4: core.translate.images), else FALLBACK_STEPS (docs/cost.md)."""
    sent = {**(call.json_body or {}), **(call.form or {})}
    for name in ("steps", "num_steps"):
        try:
            return max(1, int(sent[name]))
        except (KeyError, TypeError, ValueError):
            continue
    return image_family(call.model_id).default_steps or FALLBACK_STEPS


def _edit_model(req: ImageGenerationRequest, has_mask: bool, aliases: dict[str, str]) -> str:
    # OpenAI clients send their own model names (dall-e-2, gpt-image-1); those mean "edit", so pick the
    # Workers AI model that can: inpainting with a mask, img2img without.
    if req.model and req.model.startswith("@"):
        return resolve_model(req.model, aliases)
    return DEFAULT_INPAINT_MODEL if has_mask else DEFAULT_EDIT_MODEL


async def create_images(ctx: Context, req: ImageGenerationRequest, *, image: bytes | None = None,
                        mask: bytes | None = None) -> list[GeneratedImage]:
    """`n` images for a generation (or, with `image`, an edit), each from its own upstream call and seed."""
    if req.stream:
        raise InvalidRequest("Streaming partial images is not supported by Workers AI image models; "
                             "omit 'stream'.", param="stream", code="unsupported_value")
    aliases = dict(ctx.settings.aliases)
    ctx.record.asked = req.model or DEFAULT_IMAGE_MODEL
    if image is not None:
        model_id = _edit_model(req, mask is not None, aliases)
    else:
        name = req.model or DEFAULT_IMAGE_MODEL
        model_id = image_model_for(name, resolve_model(name, aliases), req.quality)
    base = req.seed if req.seed is not None else secrets.randbelow(2**31)
    calls = [to_workers_image(req, model_id, seed=base + i, image=image, mask=mask) for i in range(req.n or 1)]
    await ctx.workers.reserve(model_id, len(calls))
    return await gather_all(_one(ctx, call) for call in calls)


async def images_response(ctx: Context, req: ImageGenerationRequest, images: list[GeneratedImage], *,
                          base_url: str | None, ascii_text: bool = False) -> ImagesResponse:
    """The OpenAI ImagesResponse: base64 by default, or URLs served by the proxy for `response_format: url`.
    `ascii_text`: each `b64_json` is a `jsonfast.AsciiText` (`GeneratedImage.b64_text`), not a str: for the
    proxy's answer, which sends it as it came (server.routes.images)."""
    data: list[ImageOut] = []
    if req.response_format == "url":
        if base_url is None:
            raise InvalidRequest("response_format 'url' needs the proxy (it serves the files).",
                                 param="response_format", code="unsupported_value")
        store = image_store(ctx)
        for image in images:
            name = await store.save(image.data, image.info.format, now=ctx.clock())
            data.append({"url": f"{base_url.rstrip('/')}/v1/images/files/{name}"})
    else:
        data = [{"b64_json": cast(str, image.b64_text()) if ascii_text else image.b64()} for image in images]
    out: ImagesResponse = {"created": ctx.now(), "data": data}
    formats = {image.info.format for image in images}
    if len(formats) == 1:
        out["output_format"] = formats.pop()  # type: ignore[typeddict-item]
    sizes = {f"{image.info.width}x{image.info.height}" for image in images}
    if len(sizes) == 1 and (size := sizes.pop()) in _RESPONSE_SIZES:
        out["size"] = size  # type: ignore[typeddict-item]
    return out
