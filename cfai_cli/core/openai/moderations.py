"""OpenAI Moderations wire models: the request we accept (`input` in its three shapes) and the object we emit.

Pure: pydantic and the standard library. A list of strings is one input per string; a multi-modal list is ONE
input (OpenAI answers it with one result), whose text parts are classified together. Image parts cannot be
classified by a text-only guard model, so they are counted here and refused by the caller when alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from pydantic import field_validator

from cfai_cli.core.catalog import DEFAULT_MODERATION_MODEL
from cfai_cli.core.openai.base import WireModel
from cfai_cli.errors import InvalidRequest

# OpenAI's 13 categories, in the order its documentation lists them.
CATEGORIES: tuple[str, ...] = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors", "violence",
    "violence/graphic",
)


@dataclass(frozen=True, slots=True)
class ModerationInput:
    """One thing to classify: its text, and how many image parts came with it (not classified)."""

    text: str
    images: int = 0


def _part(index: int, part: Any) -> tuple[str | None, int]:
    where = f"input[{index}]"
    if not isinstance(part, dict):
        raise InvalidRequest(f"'{where}' must be a string or an object with a 'type'; a list must hold only "
                             "strings or only multi-modal parts.", param=where, code="invalid_type")
    kind = part.get("type")
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise InvalidRequest(f"'{where}.text' must be a string.", param=f"{where}.text", code="invalid_type")
        return part["text"], 0
    if kind == "image_url":
        image = part.get("image_url")
        if not isinstance(image, dict) or not isinstance(image.get("url"), str):
            raise InvalidRequest(f"'{where}.image_url.url' must be a string (an image URL or a data URL).",
                                 param=f"{where}.image_url.url", code="invalid_type")
        return None, 1
    raise InvalidRequest(f"'{where}.type' must be 'text' or 'image_url', not {kind!r}.", param=f"{where}.type",
                         code="invalid_value")


class ModerationRequest(WireModel):
    input: str | list[Any]
    model: str = DEFAULT_MODERATION_MODEL

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: str | list[Any]) -> str | list[Any]:
        if isinstance(value, list) and not value:
            raise ValueError("'input' must not be an empty list")
        return value

    def inputs(self) -> list[ModerationInput]:
        """What to classify, one entry per result the answer will hold."""
        if isinstance(self.input, str):
            return [ModerationInput(self.input)]
        if all(isinstance(item, str) for item in self.input):
            return [ModerationInput(item) for item in self.input]
        if any(isinstance(item, str) for item in self.input):
            first = next(i for i, item in enumerate(self.input) if isinstance(item, str))
            raise InvalidRequest(f"'input[{first}]' is a string but other items are multi-modal parts; a list must "
                                 "hold only strings or only parts.", param=f"input[{first}]", code="invalid_type")
        texts: list[str] = []
        images = 0
        for index, part in enumerate(self.input):
            text, image = _part(index, part)
            images += image
            if text is not None:
                texts.append(text)
        return [ModerationInput("\n".join(texts), images)] if texts else [ModerationInput("", images)]


class ModerationResult(TypedDict):
    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    category_applied_input_types: dict[str, list[Literal["text", "image"]]]
    cfai_guard_categories: list[str]  # cfai's extension: the guard model's own hazard codes (S1..S14)


class ModerationResponse(TypedDict):
    id: str
    model: str
    results: list[ModerationResult]
