"""OpenAI Images wire models: generation and edit requests we accept, the ImagesResponse we emit.

Pure: pydantic and the standard library. `seed` and `negative_prompt` are cfai extensions (Workers AI
image models take them); every other field is OpenAI's.
"""

from __future__ import annotations

from typing import Annotated, Literal, NotRequired, TypedDict

from pydantic import Field

from cfai_cli.core.openai.base import WireModel


class ImageGenerationRequest(WireModel):
    prompt: Annotated[str, Field(min_length=1, max_length=32000)]
    model: str | None = None
    n: Annotated[int, Field(ge=1, le=10)] | None = None
    size: str | None = None
    quality: Literal["standard", "hd", "low", "medium", "high", "auto"] | None = None
    style: Literal["vivid", "natural"] | None = None
    response_format: Literal["url", "b64_json"] | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None
    background: Literal["transparent", "opaque", "auto"] | None = None
    moderation: str | None = None
    output_compression: int | None = None
    stream: bool | None = None
    user: str | None = None
    seed: Annotated[int, Field(ge=0)] | None = None
    negative_prompt: str | None = None


class ImageEditRequest(ImageGenerationRequest):
    """The non-file fields of a multipart edit; the image and mask bytes travel beside it."""

    strength: Annotated[float, Field(ge=0, le=1)] | None = None


class ImageOut(TypedDict, total=False):
    b64_json: str
    url: str
    revised_prompt: str


class ImagesResponse(TypedDict):
    created: int
    data: list[ImageOut]
    output_format: NotRequired[Literal["png", "jpeg", "webp"]]
    size: NotRequired[Literal["1024x1024", "1024x1536", "1536x1024"]]
