"""OpenAI legacy Completions wire models: the `POST /v1/completions` body we accept and what we emit.

Pure: pydantic and the standard library. The same `text_completion` shape serves whole answers and
stream chunks (the spec says so); in chunks `finish_reason` is null until the last one, as OpenAI sends it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypedDict

from pydantic import Field

from cfai_cli.core.openai.base import WireModel
from cfai_cli.core.openai.chat import StreamOptions, Usage


class CompletionRequest(WireModel):
    model: str
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    n: Annotated[int, Field(ge=1, le=16)] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    echo: bool | None = None
    suffix: str | None = None
    logprobs: Annotated[int, Field(ge=0, le=5)] | None = None
    best_of: Annotated[int, Field(ge=0, le=20)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    logit_bias: dict[str, Any] | None = None
    seed: int | None = None
    user: str | None = None


CompletionFinish = Literal["stop", "length", "content_filter"]


class CompletionChoice(TypedDict):
    text: str
    index: int
    logprobs: None
    finish_reason: CompletionFinish | None


class TextCompletion(TypedDict, total=False):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage
