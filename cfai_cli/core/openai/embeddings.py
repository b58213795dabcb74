"""OpenAI Embeddings wire models: the request we accept and the list object we emit.

Pure: pydantic and the standard library. Token-id inputs are recognised here only to refuse them
clearly: their vocabulary is OpenAI's, so no Workers AI model could read them.
"""

from __future__ import annotations

from typing import Annotated, Literal, TypedDict

from pydantic import Field, field_validator

from cfai_cli.core.jsonfast import RawJson
from cfai_cli.core.openai.base import WireModel

TOKEN_INPUT_MESSAGE = (
    "Token-id input cannot be used with Workers AI models: send the text itself. "
    "(LangChain: OpenAIEmbeddings(..., check_embedding_ctx_length=False).)"
)


class EmbeddingRequest(WireModel):
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, Field(ge=1)] | None = None
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _text_only(cls, value: str | list[str] | list[int] | list[list[int]]) -> str | list[str]:
        if isinstance(value, str):
            return value
        if any(not isinstance(item, str) for item in value):
            raise ValueError(TOKEN_INPUT_MESSAGE)
        return [item for item in value if isinstance(item, str)]

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else [t for t in self.input if isinstance(t, str)]


class EmbeddingOut(TypedDict):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str | RawJson  # RawJson: floats as Workers AI wrote them (the proxy's answers)


class EmbeddingUsage(TypedDict):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(TypedDict):
    object: Literal["list"]
    data: list[EmbeddingOut]
    model: str
    usage: EmbeddingUsage
