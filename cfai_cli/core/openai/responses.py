"""OpenAI Responses API wire models: the `POST /v1/responses` body we accept and the objects we emit.

Pure: pydantic and the standard library. The request is lenient (unknown fields kept, every input form
OpenAI documents plus the older `input_items` and bare `{"input": ...}` bodies); what we emit is typed
as plain dicts with fixed key sets, built in core.translate.responses so the shape lives in one place.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired, TypedDict

from pydantic import Field, model_validator

from cfai_cli.core.openai.base import WireModel


class ReasoningParam(WireModel):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class TextFormat(WireModel):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None

    @model_validator(mode="after")
    def _schema_present(self) -> TextFormat:
        if self.type == "json_schema" and self.schema_ is None:
            raise ValueError("text.format of type 'json_schema' needs a 'schema'")
        return self


class TextParam(WireModel):
    format: TextFormat | None = None
    verbosity: str | None = None


class CreateResponseRequest(WireModel):
    """`POST /v1/responses`. Nothing is required by the spec; a missing model means the default model.

    `input` items stay plain dicts here: their many shapes are checked, with exact `param` paths, where
    they are translated (core.translate.responses.input_items).
    """

    model: str | None = None
    input: str | list[Any] | None = None
    input_items: list[Any] | None = None  # older clients' name for `input`
    instructions: str | None = None
    max_output_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextParam | None = None
    reasoning: ReasoningParam | None = None
    stream: bool | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    prompt_cache_key: str | None = None  # groups requests for prefix caching (core.affinity)
    background: bool | None = None
    conversation: str | dict[str, Any] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    top_logprobs: int | None = None
    seed: int | None = None  # not in the spec, but harmless and useful for tests against the emulator

    def raw_input(self) -> str | list[Any] | None:
        return self.input if self.input is not None else self.input_items

    def wants_summary(self) -> bool:
        return self.reasoning is not None and (self.reasoning.summary or self.reasoning.generate_summary) is not None


# ---- what we emit --------------------------------------------------------------------------------

Item = dict[str, Any]  # one output or input item, in the exact shape of its OpenAI schema


class ResponseUsage(TypedDict):
    input_tokens: int
    input_tokens_details: dict[str, int]
    output_tokens: int
    output_tokens_details: dict[str, int]
    total_tokens: int


class ResponseErrorOut(TypedDict):
    code: str
    message: str


class ResponseObject(TypedDict):
    id: str
    object: Literal["response"]
    created_at: int
    status: Literal["completed", "failed", "in_progress", "incomplete"]
    completed_at: int | None
    error: ResponseErrorOut | None
    incomplete_details: dict[str, str] | None
    instructions: str | None
    max_output_tokens: int | None
    model: str
    output: list[Item]
    output_text: str
    parallel_tool_calls: bool
    previous_response_id: str | None
    reasoning: dict[str, str | None]
    store: bool
    temperature: float | None
    text: dict[str, Any]
    tool_choice: str | dict[str, Any]
    tools: list[dict[str, Any]]
    top_p: float | None
    truncation: Literal["auto", "disabled"]
    usage: NotRequired[ResponseUsage]  # the spec types it as an object: absent until known
    user: NotRequired[str]  # a string in the spec: absent when not given
    metadata: dict[str, str]


Event = dict[str, Any]  # one Responses stream event: `type`, `sequence_number` and its own fields
